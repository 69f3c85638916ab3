"""``python -m framecast.capture`` runs the capture service."""

import sys

from .cli import main

sys.exit(main())

"""``python -m framecast.gateway`` runs the gateway service."""

import sys

from .cli import main

sys.exit(main())

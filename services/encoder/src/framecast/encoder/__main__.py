"""``python -m framecast.encoder`` runs the encoder service."""

import sys

from .cli import main

sys.exit(main())

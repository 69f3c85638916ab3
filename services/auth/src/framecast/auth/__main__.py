"""``python -m framecast.auth`` runs the auth service."""

import sys

from .cli import main

sys.exit(main())

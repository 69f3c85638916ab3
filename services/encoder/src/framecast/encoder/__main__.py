"""``python -m framecast.encoder`` runs the encoder service, as ``framecast encoder`` does (``--help`` too)."""

import sys

from framecast.runtime.cli import service_main

sys.exit(service_main("encoder"))

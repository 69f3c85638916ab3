"""``python -m framecast.capture`` runs the capture service, as ``framecast capture`` does (``--help`` too)."""

import sys

from framecast.runtime.cli import service_main

sys.exit(service_main("capture"))

"""``python -m framecast.gateway`` runs the gateway service, as ``framecast gateway`` does (``--help`` too)."""

import sys

from framecast.runtime.cli import service_main

sys.exit(service_main("gateway"))

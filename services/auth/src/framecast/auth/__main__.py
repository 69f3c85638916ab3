"""``python -m framecast.auth`` runs the auth service, as ``framecast auth`` does (``--help`` too)."""

import sys

from framecast.runtime.cli import service_main

sys.exit(service_main("auth"))

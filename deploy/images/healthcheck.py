"""Docker HEALTHCHECK: GET /readyz on the address in the environment variable named by argv[1].

Why a script: the images hold Python but no curl or wget, and the service's address is its own
FRAMECAST_* variable (0.0.0.0 is probed on loopback).
"""

import os
import sys
import urllib.request

host, _, port = os.environ[sys.argv[1]].rpartition(":")
host = "127.0.0.1" if host in ("0.0.0.0", "", "[::]") else host  # noqa: S104 - only compared
try:
    with urllib.request.urlopen(f"http://{host}:{port}/readyz", timeout=3) as response:  # noqa: S310
        sys.exit(0 if response.status == 200 else 1)
except OSError:
    sys.exit(1)

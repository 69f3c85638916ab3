"""Which processes can hand each other frames through a shared-memory ring.

Two processes share a ring when they see the same ``/dev/shm`` during the same boot: the same
machine, or containers given one IPC namespace (compose ``ipc:``, a Kubernetes pod). The
identity below names that domain, so a producer can tell an encoder it may reach by shared
memory from one it must send frames to over NATS. ``FRAMECAST_HOST_ID`` overrides it (tests give
instances distinct identities to stand for distinct hosts).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

HOST_ID_VARIABLE = "FRAMECAST_HOST_ID"


def host_identity(override: str = "") -> str:
    """``override``, else ``$FRAMECAST_HOST_ID``, else ``<hostname>/<boot>-<shm device>``."""
    if chosen := override or os.environ.get(HOST_ID_VARIABLE, ""):
        return chosen
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()[:8]
    except OSError:
        boot = "noboot"
    try:
        shm = f"{os.stat('/dev/shm').st_dev:x}"
    except OSError:
        shm = "noshm"
    return f"{socket.gethostname()}/{boot}-{shm}"

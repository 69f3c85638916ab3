"""Child processes that cannot outlive their parent: own process group plus a parent-death signal.

Used for every process the dev stack and the encoder start, so that even a SIGKILL of the parent
leaves no orphan behind (the kernel sends SIGKILL to the child when the parent thread exits).
"""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for subprocesses: SIGKILL me when the process that started me exits."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)

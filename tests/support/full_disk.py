"""A full disk for one process: a small tmpfs, filled to the last byte, in a private mount namespace.

Why: a full disk cannot be faked faithfully in-process (the error comes from the kernel, at
``write`` or ``fsync``, after a file was created), and filling the machine's own disk would
hurt everything else on it. ``unshare --user --map-root-user --mount`` gives the command its
own mount table, where a tmpfs of a few pages is mounted over ``disk`` and filled; nothing is
mounted outside, and the mount goes away with the process. The network is not unshared, so the
command still reaches loopback services.
"""

from __future__ import annotations

import functools
import shlex
import shutil
import subprocess
from pathlib import Path

DISK_SIZE = "256k"
REASON = "this machine does not allow a private mount namespace (unshare --user --mount), which a full disk needs"


@functools.cache
def available() -> bool:
    """Whether ``unshare`` can mount a tmpfs here (root, or unprivileged user namespaces allowed)."""
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
             "d=$(mktemp -d) && mount -t tmpfs -o size=16k tmpfs \"$d\" && umount \"$d\" && rmdir \"$d\""]
    return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0


def on_full_disk(argv: list[str], disk: Path, *, seed: Path | None = None, into: str = "") -> list[str]:
    """``argv`` run with a full tmpfs mounted over the directory ``disk``.

    ``seed``'s contents are copied to ``disk/into`` first (``cp -a``: modes kept), then the rest
    of the tmpfs is filled, so the command finds its files but cannot write a page more.
    """
    disk.mkdir(parents=True, exist_ok=True)
    target = disk / into if into else disk
    steps = [f"mount -t tmpfs -o size={DISK_SIZE},mode=0700 tmpfs {shlex.quote(str(disk))}"]
    if seed is not None:
        steps.append(f"mkdir -p -m 0700 {shlex.quote(str(target))}")
        steps.append(f"cp -a {shlex.quote(str(seed))}/. {shlex.quote(str(target))}/")
    steps.append(f"(dd if=/dev/zero of={shlex.quote(str(disk / '.fill'))} bs=4k 2>/dev/null || true)")
    steps.append(f"exec {shlex.join(argv)}")
    return ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", " && ".join(steps)]

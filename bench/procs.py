"""The processes a benchmark starts, the CPU time and memory each one uses, and their clean-up.

CPU time is read per process from ``/proc/<pid>/stat`` (user + system time of all its threads,
what ``getrusage``/``wait4`` would report at exit) at the start and at the end of a measuring
window, so process start-up, warm-up frames and shutdown are left out. Our own process is read
with ``getrusage(RUSAGE_SELF)``. Every child is started in its own session with a parent-death
signal, and is killed by :func:`kill_all` (registered with ``atexit``) if a benchmark is
interrupted before it stops it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence

from framecast.runtime.procs import die_with_parent, stop_process_sync

CLK_TCK = os.sysconf("SC_CLK_TCK")
SELF = 0
"""The pid meaning "this process" in :class:`CpuMeter`."""

_children: set[subprocess.Popen[bytes]] = set()


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) process ``pid`` has used; NaN once it is gone."""
    if pid == SELF:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rpartition(b")")[2].split()
    except OSError:
        return float("nan")
    # after "pid (comm)": state is field 3, utime 14, stime 15 (man 5 proc)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user
    return total - idle, total


class CpuMeter:
    """CPU seconds of a named set of processes between :meth:`start` and :meth:`stop`."""

    def __init__(self, pids: dict[str, Sequence[int]]) -> None:
        self.pids = {name: list(group) for name, group in pids.items()}
        self._start: dict[int, float] = {}
        self._machine = (0, 0)
        self.wall = 0.0
        self.used: dict[str, float] = {}
        self.machine_busy = 0.0
        """Fraction of all CPUs busy (anything on the machine) in the window."""

    def start(self) -> None:
        self._start = {pid: cpu_seconds(pid) for group in self.pids.values() for pid in group}
        self._machine = machine_jiffies()
        self.wall = time.monotonic()

    def stop(self) -> dict[str, float]:
        self.wall = time.monotonic() - self.wall
        busy, total = machine_jiffies()
        self.machine_busy = (busy - self._machine[0]) / max(total - self._machine[1], 1)
        self.used = {
            name: sum(cpu_seconds(pid) - self._start[pid] for pid in group)
            for name, group in self.pids.items()
        }
        return self.used

    @property
    def total(self) -> float:
        return sum(self.used.values())


def spawn(command: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
    """Start a child that dies with us (own session, parent-death SIGKILL) and remember it."""
    proc = subprocess.Popen(  # our own commands
        list(command), preexec_fn=die_with_parent(), start_new_session=True, **kwargs  # type: ignore[call-overload]
    )
    _children.add(proc)
    return proc


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0, term_grace: float = 2.0) -> int | None:
    """Close its stdin, wait ``grace`` s, then SIGTERM, wait ``term_grace`` s, then SIGKILL its
    group; its exit code."""
    try:
        return stop_process_sync(proc, close_stdin=True, grace_s=grace, term_grace_s=term_grace)
    finally:
        _children.discard(proc)


async def start_service(service: str, env: Mapping[str, str], ready_url: str, *, timeout: float = 30.0,
                        **kwargs: object) -> subprocess.Popen[bytes]:
    """``python -m framecast.<service>`` as a child (:func:`spawn`), returned once ``ready_url``
    answers 200; stopped again if it does not within ``timeout`` s."""
    import httpx

    from tests.support.services import eventually

    proc = spawn([sys.executable, "-m", f"framecast.{service}"], env=dict(env), **kwargs)
    try:
        async with httpx.AsyncClient(timeout=2) as http:

            async def ready() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"the {service} service exited with {proc.returncode}")
                try:
                    return (await http.get(ready_url)).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(ready, f"the {service} service answers {ready_url}", timeout)
    except BaseException:
        stop(proc, 0.0)
        raise
    return proc


def resources(pid: int) -> dict[str, float]:
    """Resident memory (MiB), open file descriptors and threads of process ``pid``, from /proc;
    NaN for what cannot be read (the process is gone)."""
    found = {"rss_mib": float("nan"), "fds": float("nan"), "threads": float("nan")}
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key == "VmRSS":
                    found["rss_mib"] = int(value.split()[0]) / 1024
                elif key == "Threads":
                    found["threads"] = int(value)
        found["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError, IndexError):
        pass
    return found


def kill_all() -> None:
    """Kill every child still running (an interrupted benchmark)."""
    for proc in list(_children):
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(2.0)
        _children.discard(proc)


def children_of(parent: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live processes whose parent is ``parent``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                ppid = int(stat.read().rpartition(b")")[2].split()[1])
            if ppid != parent:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        found.append((int(entry), command))
    return found


atexit.register(kill_all)

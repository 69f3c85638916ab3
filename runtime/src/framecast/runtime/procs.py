"""Child processes that cannot outlive their parent, and one way to stop them.

Every process the dev stack, capture and the encoder start gets its own process group and a
parent-death signal (:func:`die_with_parent`), so even a SIGKILL of the parent leaves no
orphan behind: the kernel sends SIGKILL to the child when the parent *thread* that forked it
exits. :func:`stop_process` is the one stop sequence: close stdin, then SIGTERM, then SIGKILL,
each with a timeout (:func:`stop_process_sync` runs it without an event loop).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

_PR_SET_PDEATHSIG = 1
_POLL_S = 0.02

# Bound before any fork: the pre-exec hook then only calls an already resolved C function.
_prctl = ctypes.CDLL(None, use_errno=True).prctl

Process = asyncio.subprocess.Process | subprocess.Popen  # type: ignore[type-arg]


def die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` for subprocesses: SIGKILL the child when the process calling this exits.

    Call it in the parent (``preexec_fn=die_with_parent()``): it records the parent's pid, so a
    parent that died between fork and ``prctl`` is noticed even under a subreaper.
    """
    parent = os.getpid()
    sigkill = int(signal.SIGKILL)

    def hook() -> None:
        _prctl(_PR_SET_PDEATHSIG, sigkill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return hook


async def _wait(proc: Process, timeout: float | None) -> None:
    """Until ``proc`` has exited; ``TimeoutError`` after ``timeout`` s (None: no limit)."""
    if isinstance(proc, subprocess.Popen):
        deadline = None if timeout is None else time.monotonic() + timeout
        while proc.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError
            await asyncio.sleep(_POLL_S)
        return
    await asyncio.wait_for(proc.wait(), timeout)


def _exited(proc: Process) -> bool:
    if isinstance(proc, subprocess.Popen):
        return proc.poll() is not None
    return proc.returncode is not None


def _signal(proc: Process, sig: signal.Signals, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(proc.pid, sig)
        else:
            os.kill(proc.pid, sig)


def _close_stdin(proc: Process) -> None:
    stdin = proc.stdin
    if stdin is not None:
        with contextlib.suppress(OSError):
            stdin.close()


def _stop_sequence(
    proc: Process, close_stdin: bool | Callable[[], None], grace_s: float, term_grace_s: float, group: bool,
) -> Iterator[float | None]:
    """The stop sequence's actions, in order; yields how long to wait for an exit after each."""
    if close_stdin is True:
        _close_stdin(proc)
    elif callable(close_stdin):
        close_stdin()
    steps: tuple[tuple[signal.Signals | None, float | None], ...] = (
        (None, grace_s),
        (signal.SIGTERM, term_grace_s),
        (signal.SIGKILL, None),
    )
    for sig, grace in steps:
        if _exited(proc):
            return
        if sig is not None:
            _signal(proc, sig, group)
        elif not grace:
            continue
        yield grace


async def stop_process(
    proc: Process,
    *,
    close_stdin: bool | Callable[[], None] = False,
    grace_s: float = 0.0,
    term_grace_s: float = 5.0,
    group: bool = True,
) -> int | None:
    """Stop ``proc`` and reap it; its exit code. Safe to call twice, and on an exited process.

    1. ``close_stdin``: True closes ``proc.stdin``; a callable closes whatever feeds the child
       (a pipe the caller owns). Then ``grace_s`` s for the child to flush and exit by itself.
    2. SIGTERM, then ``term_grace_s`` s.
    3. SIGKILL, then wait for it.

    Signals go to the child's process group (``group``; children here start in their own
    session), so helpers it started go with it.
    """
    for grace in _stop_sequence(proc, close_stdin, grace_s, term_grace_s, group):
        with contextlib.suppress(TimeoutError):
            await _wait(proc, grace)
    return proc.returncode


def stop_process_sync(
    proc: subprocess.Popen,  # type: ignore[type-arg]
    *,
    close_stdin: bool | Callable[[], None] = False,
    grace_s: float = 0.0,
    term_grace_s: float = 5.0,
    group: bool = True,
) -> int | None:
    """:func:`stop_process` for code without an event loop (the benchmarks): the same sequence."""
    for grace in _stop_sequence(proc, close_stdin, grace_s, term_grace_s, group):
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(grace)
    return proc.returncode

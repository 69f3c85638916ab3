"""The one stop sequence (close stdin, SIGTERM, SIGKILL), from async code and without a loop."""

from __future__ import annotations

import signal
import subprocess
import sys

from framecast.runtime.procs import die_with_parent, stop_process, stop_process_sync

IGNORES_SIGTERM = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)"


def _start(*command: str, stdin: int | None = None, stdout: int | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(list(command), stdin=stdin, stdout=stdout,
                            preexec_fn=die_with_parent(), start_new_session=True)


async def test_closing_stdin_lets_a_reader_exit_by_itself() -> None:
    proc = _start("cat", stdin=subprocess.PIPE)
    assert await stop_process(proc, close_stdin=True, grace_s=10) == 0
    assert await stop_process(proc) == 0  # twice is fine


def test_sigterm_then_sigkill_without_a_loop() -> None:
    sleeper = _start("sleep", "60")
    assert stop_process_sync(sleeper) == -signal.SIGTERM
    stubborn = _start(sys.executable, "-c", IGNORES_SIGTERM, stdout=subprocess.PIPE)
    assert stubborn.stdout is not None
    stubborn.stdout.readline()  # its handler is set
    assert stop_process_sync(stubborn, term_grace_s=0.2) == -signal.SIGKILL
    stubborn.stdout.close()

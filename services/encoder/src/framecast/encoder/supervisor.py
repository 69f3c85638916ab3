"""One supervised FFmpeg process per stream: spawn, watch, restart, fall back, stop.

FFmpeg is the only thing that talks RTSP to MediaMTX, so its health is the stream's
health. The supervisor reads FFmpeg's own ``-progress`` output to know when it is
publishing and when it has stalled, restarts it with backoff when it dies, switches a
stream from a failing hardware encoder to libx264, and gives up - saying why, with the
last FFmpeg errors, scrubbed of secrets - when restarts come too fast. A server that cannot
be reached is not a reason to give up: the stream itself is fine, so it keeps retrying at the
capped backoff and publishes again as soon as MediaMTX (or the auth service) is back.

Readiness: the RTSP muxer's ``write_header`` is the whole ANNOUNCE / SETUP / RECORD
exchange, and FFmpeg's first ``-progress`` block waits for it (progress.py reads those
blocks and the error lines) - so a frame counter above zero means the server accepted RECORD
and packets are going out. A server that accepts the TCP connection but never answers
produces no progress block at all (checked against this FFmpeg 9 build), which the start
timeout catches.

Frames reach FFmpeg's stdin through the pump (pump.py): ``on_process(fd)`` hands over the
write end of the pipe each time FFmpeg (re)starts and ``on_process(None)`` takes it back.

FFmpeg dies with its parent: it is started with PR_SET_PDEATHSIG = SIGKILL
(``framecast.runtime.procs``), so even a
SIGKILLed encoder service leaves no publisher behind. Linux sends that signal when the
*thread* that forked the child exits, and asyncio forks in the event-loop thread: run the
supervisor on a loop whose thread lives as long as the service (the main thread).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import random
import re
import shlex
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from framecast.proto.messages import VideoFormat
from framecast.runtime.ffmpeg import scrub, strip_log_prefix
from framecast.runtime.procs import die_with_parent, stop_process

from .profiles import SOFTWARE_ENCODER, build_command, is_runtime_failure
from .progress import STDERR_LINES, Progress, read_errors, read_progress

log = logging.getLogger(__name__)

EventKind = Literal[
    "starting", "publishing", "stalled", "restarting", "failed", "stopped", "encoder_fallback"
]
UrlFactory = Callable[[str], Awaitable[str]]
"""The publish URL for the next run, given why the previous one ended (``"first start"``): a
run that could not reach its server may be sent to another one."""
EventCallback = Callable[["SupervisorEvent"], Awaitable[None]]
ProcessCallback = Callable[[int | None], None]

_LOG_LEVELS = {
    "stalled": logging.WARNING,
    "restarting": logging.WARNING,
    "encoder_fallback": logging.WARNING,
    "failed": logging.ERROR,
}

#: Failures saying that the server, or the auth service handing out publish tokens, cannot be
#: reached right now (FFmpeg's socket errors; the bus errors of the URL factory). They do not
#: count towards giving up: a MediaMTX restart must not end every stream.
_UNREACHABLE = re.compile(
    r"Connection refused|Connection timed out|No route to host|Network is unreachable"
    r"|no publish URL: (NoResponders|RequestTimedOut)\b"
)


def server_unreachable(reason: str) -> bool:
    """Whether a run ended because the server could not be reached, not because of FFmpeg."""
    return _UNREACHABLE.search(reason) is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorEvent:
    """One thing that happened to a stream's FFmpeg; ``reason`` is always scrubbed."""

    kind: EventKind
    reason: str
    encoder: str
    attempt: int
    pid: int | None = None
    backoff_s: float = 0.0
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorPolicy:
    """Timings of supervision; the defaults suit production, tests shorten them."""

    backoff_base_s: float = 0.5
    backoff_cap_s: float = 10.0
    healthy_after_s: float = 10.0
    """A run publishing this long resets the backoff."""
    max_restarts: int = 5
    window_s: float = 60.0
    """More than ``max_restarts`` restarts within ``window_s`` -> failed. Runs that ended
    because the server was unreachable are not counted: those retry for as long as it takes."""
    stall_timeout_s: float = 5.0
    """Publishing, but the frame counter has not moved for this long -> stalled."""
    start_timeout_s: float = 15.0
    """Not publishing this long after spawn -> restart."""
    stop_grace_s: float = 3.0
    """After stdin is closed, how long FFmpeg gets to flush and exit."""
    term_grace_s: float = 2.0
    """After SIGTERM, how long before SIGKILL."""


@dataclass(slots=True)
class _Run:
    """What one FFmpeg process did."""

    proc: asyncio.subprocess.Process
    stdin_fd: int | None
    started: float
    published: float | None = None
    last_advance: float = 0.0
    last_frame: int = 0
    first_error: str = ""
    errors: list[str] = field(default_factory=list)
    """Its last STDERR_LINES error lines, scrubbed."""


class Supervisor:
    """Keeps one stream's FFmpeg publishing until :meth:`stop`, or until it gives up."""

    def __init__(
        self,
        *,
        ffmpeg: str,
        encoder: str,
        fmt: VideoFormat,
        url_factory: UrlFactory,
        on_event: EventCallback | None = None,
        on_process: ProcessCallback | None = None,
        policy: SupervisorPolicy | None = None,
        gop: int | None = None,
        bitrate_kbps: int | None = None,
        extra: Sequence[str] = (),
        name: str = "stream",
    ) -> None:
        self._ffmpeg = ffmpeg
        self._encoder = encoder
        self._fmt = fmt
        self._url_factory = url_factory
        self._on_event = on_event
        self._on_process = on_process
        self._policy = policy or SupervisorPolicy()
        self._gop = gop
        self._bitrate_kbps = bitrate_kbps
        self._extra = tuple(extra)
        self._name = name
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._restart_times: collections.deque[float] = collections.deque()
        self._stop = asyncio.Event()
        self._retired = False
        self._task: asyncio.Task[None] | None = None
        self._run: _Run | None = None
        self._progress = Progress()
        self._restarts = 0
        self._attempt = 0
        self._backoff_exp = 0
        self._final: SupervisorEvent | None = None

    # ----- what callers read -----------------------------------------------------------

    @property
    def encoder(self) -> str:
        """The encoder in use now (libx264 after a hardware fallback)."""
        return self._encoder

    @property
    def progress(self) -> Progress:
        return self._progress

    @property
    def restarts(self) -> int:
        return self._restarts

    @property
    def pid(self) -> int | None:
        """FFmpeg's pid while one runs."""
        run = self._run
        return run.proc.pid if run is not None and run.proc.returncode is None else None

    @property
    def publishing(self) -> bool:
        run = self._run
        return run is not None and run.published is not None and run.proc.returncode is None

    @property
    def final(self) -> SupervisorEvent | None:
        """The ``failed`` or ``stopped`` event once supervision has ended."""
        return self._final

    def stderr_tail(self) -> list[str]:
        """FFmpeg's last error lines (scrubbed), oldest first, across restarts."""
        return list(self._stderr)

    # ----- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start supervising; call from the event-loop thread that will live longest."""
        if self._task is not None:
            raise RuntimeError("supervisor already started")
        self._task = asyncio.create_task(self._supervise(), name=f"ffmpeg-supervisor:{self._name}")

    def retire(self) -> None:
        """Let the running FFmpeg go on publishing, but start no other: another encoder is
        taking the stream over, and this one stays on air until that one publishes."""
        self._retired = True

    async def stop(self) -> None:
        """Close stdin, wait, SIGTERM the group, wait, SIGKILL it. Safe to call twice."""
        self._stop.set()
        if self._task is not None:
            await asyncio.shield(self._task)

    async def wait(self) -> SupervisorEvent | None:
        """Until supervision ends (failed or stopped); the final event."""
        if self._task is not None:
            await asyncio.shield(self._task)
        return self._final

    # ----- supervision loop ------------------------------------------------------------

    async def _supervise(self) -> None:
        reason = ""
        while not self._stop.is_set():
            self._attempt += 1
            run_reason, run = await self._run_once(reason or "first start")
            if self._stop.is_set() or self._retired:
                break
            reason = run_reason
            now = time.monotonic()
            if run is not None and run.published is not None and (
                now - run.published >= self._policy.healthy_after_s
            ):
                self._backoff_exp = 0  # a healthy run: the next failure is a fresh one
            fallback = self._fallback_line(run)
            if fallback is not None:
                previous, self._encoder = self._encoder, SOFTWARE_ENCODER
                await self._emit(
                    "encoder_fallback",
                    f"{previous} failed at run time ({fallback}); switched to {SOFTWARE_ENCODER}",
                )
            if not server_unreachable(reason):
                self._restart_times.append(now)
            while self._restart_times and now - self._restart_times[0] > self._policy.window_s:
                self._restart_times.popleft()
            if len(self._restart_times) > self._policy.max_restarts:
                await self._finish(
                    "failed",
                    f"gave up after {len(self._restart_times)} failures within "
                    f"{self._policy.window_s:g} s; last: {reason}"
                    + self._error_summary(),
                )
                return
            delay = 0.0 if fallback is not None else self._next_backoff()
            self._restarts += 1
            await self._emit("restarting", reason, backoff_s=delay)
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
        await self._finish("stopped", "stop requested")

    def _next_backoff(self) -> float:
        # exponential backoff with full jitter
        policy = self._policy
        ceiling = min(policy.backoff_cap_s, policy.backoff_base_s * 2**self._backoff_exp)
        self._backoff_exp += 1
        return random.uniform(0, ceiling)

    def _fallback_line(self, run: _Run | None) -> str | None:
        if run is None or self._encoder == SOFTWARE_ENCODER:
            return None
        return next((line for line in run.errors if is_runtime_failure(self._encoder, line)), None)

    def _error_summary(self) -> str:
        tail = list(self._stderr)[-5:]
        return f"; FFmpeg said: {' | '.join(tail)}" if tail else ""

    async def _run_once(self, why: str) -> tuple[str, _Run | None]:
        """Run FFmpeg once (``why``: what ended the previous run); why this one ended."""
        try:
            url = await self._url_factory(why)
        except Exception as exc:  # the factory is the caller's code: any failure is one attempt
            return scrub(f"no publish URL: {type(exc).__name__}: {exc}"), None
        command = build_command(
            self._ffmpeg,
            self._encoder,
            self._fmt,
            url,
            gop=self._gop,
            bitrate_kbps=self._bitrate_kbps,
            extra=self._extra,
        )
        log.debug("%s: running %s", self._name, scrub(shlex.join(command)))
        read_fd, write_fd = os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=read_fd,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        except OSError as exc:
            os.close(write_fd)
            return scrub(f"could not start FFmpeg: {exc}"), None
        finally:
            os.close(read_fd)
        run = _Run(proc=proc, stdin_fd=write_fd, started=time.monotonic())
        self._run = run
        readers: list[asyncio.Task[None]] = []
        reason: str | None = None
        try:
            await self._emit("starting", why)
            readers += [
                asyncio.create_task(self._read_progress(run)),
                asyncio.create_task(self._read_stderr(run)),
            ]
            if self._on_process is not None:
                self._on_process(write_fd)
            reason = await self._watch(run)
        finally:
            # on a stop request EOF comes first: FFmpeg flushes, sends TEARDOWN and exits
            await stop_process(
                proc,
                close_stdin=lambda: self._close_stdin(run),
                grace_s=self._policy.stop_grace_s if reason == "stop requested" else 0.0,
                term_grace_s=self._policy.term_grace_s,
            )
            await asyncio.gather(*readers, return_exceptions=True)
        if reason is None:
            reason = self._exit_reason(proc.returncode, run)
        return reason, run

    async def _watch(self, run: _Run) -> str | None:
        """Until FFmpeg exits (None), stalls or never publishes (the reason), or stop."""
        policy = self._policy
        tick = max(0.05, min(0.25, policy.stall_timeout_s / 4))
        exited = asyncio.create_task(run.proc.wait())
        stopping = asyncio.create_task(self._stop.wait())
        try:
            while True:
                done, _ = await asyncio.wait(
                    {exited, stopping}, timeout=tick, return_when=asyncio.FIRST_COMPLETED
                )
                if exited in done:
                    return None
                if stopping in done:
                    return "stop requested"
                now = time.monotonic()
                if run.published is None and now - run.started > policy.start_timeout_s:
                    return f"not publishing {policy.start_timeout_s:g} s after start"
                if run.published is not None and now - run.last_advance > policy.stall_timeout_s:
                    reason = (
                        f"no progress for {policy.stall_timeout_s:g} s (frame {run.last_frame})"
                    )
                    await self._emit("stalled", reason)
                    return reason
        finally:
            exited.cancel()
            stopping.cancel()

    def _close_stdin(self, run: _Run) -> None:
        if run.stdin_fd is None:
            return
        if self._on_process is not None:
            self._on_process(None)
        os.close(run.stdin_fd)
        run.stdin_fd = None

    def _exit_reason(self, returncode: int | None, run: _Run) -> str:
        if returncode is not None and returncode < 0:
            try:
                how = f"killed by {signal.Signals(-returncode).name}"
            except ValueError:
                how = f"killed by signal {-returncode}"
        else:
            how = f"exited with code {returncode}"
        # FFmpeg's first error names the cause; the lines after it are the pipeline unwinding
        first = strip_log_prefix(run.first_error)
        return f"FFmpeg {how}" + (f": {first}" if first else "")

    # ----- FFmpeg output ---------------------------------------------------------------

    async def _read_progress(self, run: _Run) -> None:
        assert run.proc.stdout is not None

        async def on_block(progress: Progress) -> None:
            self._progress = progress
            if progress.frame > run.last_frame:
                run.last_frame = progress.frame
                run.last_advance = progress.at
                if run.published is None:
                    run.published = progress.at
                    await self._emit(
                        "publishing", f"RTSP server accepted RECORD; frame {progress.frame} sent"
                    )

        await read_progress(run.proc.stdout, on_block, time.monotonic)

    async def _read_stderr(self, run: _Run) -> None:
        assert run.proc.stderr is not None

        def on_line(line: str) -> None:
            self._stderr.append(line)
            run.first_error = run.first_error or line
            run.errors.append(line)
            del run.errors[:-STDERR_LINES]

        await read_errors(run.proc.stderr, on_line)

    # ----- events ----------------------------------------------------------------------

    async def _finish(self, kind: EventKind, reason: str) -> None:
        self._run = None
        self._final = await self._emit(kind, reason)

    async def _emit(
        self, kind: EventKind, reason: str, *, backoff_s: float = 0.0
    ) -> SupervisorEvent:
        event = SupervisorEvent(
            kind=kind,
            reason=scrub(reason),
            encoder=self._encoder,
            attempt=self._attempt,
            pid=self.pid,
            backoff_s=backoff_s,
        )
        log.log(
            _LOG_LEVELS.get(kind, logging.INFO),
            "%s: %s (%s, attempt %d): %s",
            self._name, kind, event.encoder, event.attempt, event.reason,
        )
        if self._on_event is not None:
            try:
                await self._on_event(event)
            except Exception:
                log.exception("%s: on_event callback failed for %s", self._name, kind)
        return event

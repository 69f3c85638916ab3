"""Moving frames from a transport's reader into FFmpeg's stdin, at the stream's frame rate.

Blocking pipe writes of megabyte frames do not belong on the event loop, so one thread
per stream does them: straight from the reader's buffer (a shared-memory slot or a NATS
payload) with ``os.write`` of a memoryview into a pipe raised to 1 MiB - no copy, no
per-frame allocation. The newest frame always wins: the pump takes a frame only when a
slot of the announced frame rate is due, and the reader skips (and counts) whatever
arrived in between, so nothing queues up when FFmpeg lags.

When the producer is slow or paused, the last frame is written again about once a
second. FFmpeg stamps frames with the wall clock and emits constant frame rate (see
profiles.py), so those repeats keep the RTSP publish alive while the video keeps real
time. FFmpeg dying mid-write (EPIPE) is normal: the pump waits for the supervisor's next
process (``attach``) and carries on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import fcntl
import logging
import os
import select
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from framecast.frames import FrameReader

log = logging.getLogger(__name__)

F_SETPIPE_SZ = 1031
PIPE_SIZE = 1 << 20
_POLL_MS = 100  # longest a blocked write goes without looking at stop/attach
_WAIT_S = 0.1  # longest a wait for a frame goes without looking at stop/attach
_CHECK_S = 0.05  # how often the producer's liveness is looked at (a syscall: not every frame)
_EARLY = 0.2  # a frame may be written this fraction of a period before a whole credit is earned

PumpEventKind = Literal["producer_ended", "producer_lost", "producer_resumed"]


@dataclass(frozen=True, slots=True)
class PumpEvent:
    """Something about the producer the service must act on (end or stall the stream)."""

    kind: PumpEventKind
    reason: str


@dataclass(frozen=True, slots=True)
class PumpStats:
    frames_in: int
    frames_written: int
    repeated: int
    dropped: int
    write_errors: int


PumpEventCallback = Callable[[PumpEvent], Coroutine[Any, Any, None]]


def raise_pipe_size(fd: int, size: int = PIPE_SIZE) -> int:
    """Grow the pipe behind ``fd`` to ``size`` bytes if the kernel allows; the size it has."""
    try:
        return fcntl.fcntl(fd, F_SETPIPE_SZ, size)
    except OSError:  # EPERM above /proc/sys/fs/pipe-max-size, EBADF, not a pipe: keep it
        return 0


class Pump:
    """One stream's frame pump: reader -> FFmpeg stdin, in its own thread."""

    def __init__(
        self,
        reader: FrameReader,
        fps: int,
        *,
        heartbeat_s: float = 1.0,
        producer_timeout_s: float = 5.0,
        on_event: PumpEventCallback | None = None,
        name: str = "stream",
    ) -> None:
        self._reader = reader
        self._period = 1.0 / fps
        self._heartbeat_s = heartbeat_s
        self._producer_timeout_s = producer_timeout_s
        self._on_event = on_event
        self._name = name
        self._cond = threading.Condition()
        self._fd: int | None = None  # our dup of FFmpeg's stdin, non-blocking
        self._generation = 0
        self._busy: int | None = None  # the fd a write is using right now
        self._retired: list[int] = []  # replaced while busy: closed when the write ends
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[concurrent.futures.Future[None]] = set()
        self._poller = select.poll()  # used by the pump thread only
        self._poll_fd = -1
        self.frames_written = 0
        self.repeated = 0
        self.write_errors = 0

    # ----- what callers read -----------------------------------------------------------

    @property
    def dropped(self) -> int:
        return self._reader.dropped

    @property
    def stats(self) -> PumpStats:
        return PumpStats(
            frames_in=self._reader.frames,
            frames_written=self.frames_written,
            repeated=self.repeated,
            dropped=self._reader.dropped,
            write_errors=self.write_errors,
        )

    # ----- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start the pump thread; call from the event loop that should receive events."""
        if self._thread is not None:
            raise RuntimeError("pump already started")
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=f"pump:{self._name}", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stop the thread and close the pipe end it holds. Safe to call twice."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        with self._cond:
            self._replace_fd(None)
        if self._pending:
            await asyncio.gather(
                *(asyncio.wrap_future(f) for f in list(self._pending)), return_exceptions=True
            )

    def attach(self, fd: int | None) -> None:
        """FFmpeg's stdin (the supervisor's ``on_process``): a new pipe, or None when gone.

        The pump keeps its own duplicate, so ``fd`` may be closed by the caller right after.
        """
        dup = None
        if fd is not None:
            dup = os.dup(fd)
            os.set_blocking(dup, False)
            raise_pipe_size(dup)
        with self._cond:
            if self._stopping:
                if dup is not None:
                    os.close(dup)
                return
            self._replace_fd(dup)
            self._cond.notify_all()

    def _replace_fd(self, fd: int | None) -> None:
        # caller holds self._cond
        old, self._fd = self._fd, fd
        self._generation += 1
        if old is not None:
            if old == self._busy:
                self._retired.append(old)
            else:
                os.close(old)

    # ----- the pump thread -------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._pump()
        except Exception as exc:  # a broken reader must not die silently in its thread
            log.exception("%s: the frame pump failed", self._name)
            self._emit("producer_lost", f"the frame reader failed: {type(exc).__name__}: {exc}")

    def _pump(self) -> None:
        reader = self._reader
        period = self._period
        full_at = time.monotonic()  # when the write credit is back to one whole frame
        next_heartbeat = full_at + self._heartbeat_s
        primed = -1  # the FFmpeg generation that already got its first frame
        dead_since: float | None = None
        lost = ended = False
        next_check = 0.0
        while True:
            with self._cond:
                if self._stopping:
                    return
                if self._fd is None:
                    self._cond.wait(_WAIT_S)
                generation = self._generation
                attached = self._fd is not None
            now = time.monotonic()
            if now >= next_check:  # the producer's health, a few times a second (not per frame)
                next_check = now + _CHECK_S
                if reader.closed and not ended:
                    ended = True
                    self._emit("producer_ended", "the producer ended the stream")
                if reader.producer_alive():
                    dead_since = None
                    if lost:
                        lost = False
                        self._emit("producer_resumed", "the producer is back")
                elif dead_since is None:
                    dead_since = now
                elif not lost and now - dead_since >= self._producer_timeout_s:
                    lost = True
                    self._emit(
                        "producer_lost", f"no sign of the producer for {self._producer_timeout_s:g} s"
                    )
            if not attached:
                continue
            if primed != generation:
                # a fresh FFmpeg needs a frame at once to open its encoder and connect
                primed = generation
                self._write_frame(reader.last_frame(), generation, repeat=True)
                full_at = now + period
                next_heartbeat = now + self._heartbeat_s
                continue
            allowed_at = full_at - _EARLY * period
            if now < allowed_at:
                with self._cond:
                    self._cond.wait(allowed_at - now)
                continue
            view = reader.wait_frame(max(0.0, min(next_heartbeat - now, _WAIT_S)))
            if view is not None:
                self._write_frame(view, generation, repeat=False)
            elif time.monotonic() >= next_heartbeat:
                self._write_frame(reader.last_frame(), generation, repeat=True)
            else:
                continue
            written_at = time.monotonic()
            next_heartbeat = written_at + self._heartbeat_s
            # A credit of at most one frame, earned at the stream's rate, pays for each write:
            # a producer at that rate is forwarded the moment each frame arrives, whatever its
            # phase (no fixed grid to wait for), and a faster one averages exactly that rate.
            credit = min(1.0, 1.0 - (full_at - written_at) / period)
            full_at = written_at + (2.0 - credit) * period

    def _write_frame(self, view: memoryview | None, generation: int, *, repeat: bool) -> bool:
        """Write one whole frame (then release it); False if there was none or the pipe went."""
        if view is None:
            return False
        try:
            done = self._write_all(view, generation)
        finally:
            self._reader.release()
        if done:
            if repeat:
                self.repeated += 1
            else:
                self.frames_written += 1
        return done

    def _write_all(self, view: memoryview, generation: int) -> bool:
        with self._cond:
            if self._generation != generation or self._fd is None:
                return False
            fd = self._busy = self._fd
        data = view if view.ndim == 1 and view.format in ("B", "b", "c") else view.cast("B")
        size = len(data)
        offset = 0
        if self._poll_fd != fd:
            self._poller = select.poll()
            self._poller.register(fd, select.POLLOUT)
            self._poll_fd = fd
        poller = self._poller
        try:
            while offset < size:
                try:
                    offset += os.write(fd, data[offset:] if offset else data)
                except BlockingIOError:
                    poller.poll(_POLL_MS)
                    with self._cond:
                        if self._stopping or self._generation != generation:
                            return False  # FFmpeg is being replaced or stopped
                except OSError as exc:
                    if exc.errno not in (errno.EPIPE, errno.EBADF):
                        log.warning("%s: writing a frame to FFmpeg failed: %s", self._name, exc)
                    self.write_errors += 1
                    with self._cond:
                        if self._generation == generation:
                            self._replace_fd(None)  # busy: closed just below
                    return False
            return True
        finally:
            with self._cond:
                self._busy = None
                for stale in self._retired:
                    os.close(stale)
                self._retired.clear()

    def _emit(self, kind: PumpEventKind, reason: str) -> None:
        log.info("%s: %s: %s", self._name, kind, reason)
        if self._on_event is None or self._loop is None:
            return
        try:
            future: concurrent.futures.Future[None] = asyncio.run_coroutine_threadsafe(
                self._on_event(PumpEvent(kind, reason)), self._loop
            )
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return
        with self._cond:
            self._pending.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: concurrent.futures.Future[None]) -> None:
        with self._cond:
            self._pending.discard(future)
        if not future.cancelled() and (exc := future.exception()) is not None:
            log.error("%s: pump event callback failed: %r", self._name, exc)


__all__ = ["F_SETPIPE_SZ", "Pump", "PumpEvent", "PumpStats", "raise_pipe_size"]


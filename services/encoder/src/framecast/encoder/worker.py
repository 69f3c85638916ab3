"""One claimed stream inside an encoder: reader -> pump -> supervised FFmpeg, and its state.

The worker translates what the pump and the supervisor observe into lifecycle transitions,
so the stream's state always says what FFmpeg and the producer are really doing, with the
encoder id and kind and a reason a person can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from framecast import frames
from framecast.proto.bus import UNAVAILABLE
from framecast.proto.messages import StreamAnnounce, StreamStats
from framecast.proto.states import ACTIVE, IllegalTransition, StreamState
from framecast.runtime.ffmpeg import scrub

from .pump import Pump, PumpEvent
from .supervisor import Supervisor, SupervisorEvent, SupervisorPolicy

if TYPE_CHECKING:
    from .service import EncoderService

log = logging.getLogger("framecast.encoder")
S = StreamState

RECORD_RETRY_FIRST_S = 0.25
RECORD_RETRY_MAX_S = 2.0
RECORD_DRAIN_S = 2.0
"""How long a stopping worker lets its queued state writes finish."""


class WorkerError(Exception):
    """The stream cannot be taken (its frame transport cannot be opened)."""


class StreamWorker:
    def __init__(self, service: EncoderService, announce: StreamAnnounce) -> None:
        self.service = service
        self.announce = announce
        self.stream_id = announce.stream_id
        self.reader: frames.FrameReader | None = None
        self.pump: Pump | None = None
        self.supervisor: Supervisor | None = None
        self.started_at = time.monotonic()
        self._stats_at = (time.monotonic(), 0, 0)
        self._ending = False
        self._lost_task: asyncio.Task[None] | None = None
        self._shutdown_task: asyncio.Task[None] | None = None
        self._end_task: asyncio.Task[None] | None = None
        self._writes: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._recorder: asyncio.Task[None] | None = None

    @property
    def transport_name(self) -> str:
        return frames.address(self.announce.transport)

    @property
    def encoder_kind(self) -> str:
        return self.supervisor.encoder if self.supervisor else self.service.encoder_kind

    async def open_reader(self) -> None:
        try:
            self.reader = await frames.open_reader(
                self.announce.transport, self.announce.format, self.service.bus.nc
            )
        except frames.RingOpenError as exc:
            raise WorkerError(str(exc)) from None

    async def start(self, previous_encoder: str) -> None:
        settings = self.service.settings
        fmt = self.announce.format
        reason = f"taken over from encoder {previous_encoder}" if previous_encoder else "claimed"
        await self.service.store.transition(
            self.stream_id, S.STARTING, reason=reason, only_from=ACTIVE,
            encoder_id=self.service.instance, encoder_kind=self.service.encoder_kind,
            transport=frames.kind(self.announce.transport), placement=self.announce.placement,
        )
        assert self.reader is not None, "open_reader() before start()"
        self.pump = Pump(
            self.reader, fmt.fps, heartbeat_s=settings.heartbeat_repeat_s,
            producer_timeout_s=settings.producer_timeout_s, on_event=self._on_pump_event, name=self.stream_id,
        )
        self.supervisor = Supervisor(
            ffmpeg=self.service.ffmpeg, encoder=self.service.encoder_kind, fmt=fmt,
            url_factory=self.service.publish_url_factory(self.stream_id),
            on_event=self._on_supervisor_event, on_process=self.pump.attach,
            policy=SupervisorPolicy(stall_timeout_s=settings.stall_timeout_s),
            gop=settings.gop or None, bitrate_kbps=settings.bitrate_kbps or None, name=self.stream_id,
        )
        self.pump.start()
        self.supervisor.start()

    # ----- what FFmpeg and the producer tell us --------------------------------------------

    async def _move(self, state: StreamState, reason: str, *, strict: bool = False, **fields: Any) -> None:
        """Record a transition; an illegal one is dropped. A bus failure is logged, or raised
        with ``strict`` (the recorder then retries it)."""
        try:
            await self.service.store.transition(self.stream_id, state, reason=reason, **fields)
        except IllegalTransition as exc:
            log.debug("%s", exc)
        except UNAVAILABLE as exc:
            if strict:
                raise
            log.warning("could not record %s for %s: %s", state, self.stream_id, exc)

    async def _strict_move(self, state: StreamState, reason: str, **fields: Any) -> None:
        await self._move(state, reason, strict=True, **fields)

    def _record(self, write: Callable[[], Awaitable[None]]) -> None:
        """Queue a state write. Writes run in order in one task, each retried until NATS takes
        it: what FFmpeg or the producer did during a NATS outage is recorded once NATS is
        back, and the supervisor and the pump never wait for the bus."""
        self._writes.put_nowait(write)
        if self._recorder is None or self._recorder.done():
            self._recorder = asyncio.create_task(self._run_recorder(), name=f"record-{self.stream_id}")

    async def _run_recorder(self) -> None:
        while True:
            write = await self._writes.get()
            delay, warned = RECORD_RETRY_FIRST_S, False
            try:
                while True:
                    try:
                        await write()
                        break
                    except UNAVAILABLE as exc:
                        if not warned:
                            warned = True
                            log.warning("%s: cannot record its state yet (%s); retrying until NATS is back",
                                        self.stream_id, exc, extra={"stream_id": self.stream_id})
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, RECORD_RETRY_MAX_S)
                    except Exception:
                        log.exception("%s: recording its state failed", self.stream_id)
                        break
            finally:
                self._writes.task_done()

    async def _stop_recorder(self) -> None:
        """Let queued writes finish (briefly: NATS may be gone), then stop recording."""
        if self._recorder is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._writes.join(), RECORD_DRAIN_S)
        self._recorder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._recorder

    def _explain(self, reason: str) -> str:
        """Say what an FFmpeg error means for the person reading the stream's state."""
        server = self.service.settings.mediamtx_rtsp
        if "Connection refused" in reason:
            return f"MediaMTX is not reachable at {server} (connection refused); is it running?"
        if "401 Unauthorized" in reason or "403 Forbidden" in reason:
            return f"MediaMTX at {server} refused the publish token; check its authHTTPAddress and the auth service"
        return reason

    async def _on_supervisor_event(self, event: SupervisorEvent) -> None:
        self._record(lambda: self._supervisor_event(event))

    async def _supervisor_event(self, event: SupervisorEvent) -> None:
        reason = self._explain(scrub(event.reason))
        record = await self.service.store.get(self.stream_id)
        state = record.state if record else None
        if self._ending and event.kind not in ("stopped", "failed"):
            return
        match event.kind:
            # a stalled stream stays stalled through its retries (one history event per outage,
            # not two per retry); its next publish moves it on
            case "starting" if state in (S.PUBLISHING, S.LIVE):
                await self._strict_move(S.STARTING, f"restarting FFmpeg: {reason}", cause=reason, attempt=event.attempt)
            case "publishing":
                await self._strict_move(S.PUBLISHING, f"publishing with {event.encoder}", encoder_kind=event.encoder)
            case "stalled":
                await self._strict_move(S.STALLED, reason)
            case "restarting":
                retry = f" (retrying in {event.backoff_s:.1f} s)" if event.backoff_s else " (retrying now)"
                fields = {"cause": reason, "attempt": event.attempt, "retry_in_s": event.backoff_s}
                if state in (S.STARTING, S.PUBLISHING, S.LIVE):
                    await self._strict_move(S.STALLED, reason + retry, **fields)
                elif state is S.STALLED:
                    await self.service.store.update(self.stream_id, reason=reason + retry, only_in=ACTIVE, **fields)
            case "encoder_fallback":
                await self.service.store.update(self.stream_id, encoder_kind=event.encoder, reason=reason,
                                                only_in=ACTIVE)
            case "failed":
                await self._strict_move(S.FAILED, reason if reason.startswith("gave up") else f"gave up: {reason}")
                self.service.release(self)
                if not self._ending:
                    self._shutdown_task = asyncio.create_task(self.shutdown())
            case "stopped":
                if state is S.STOPPING and not self._ending:
                    await self._strict_move(S.STOPPED, record.reason if record else "stopped")
                self.service.release(self)

    async def _on_pump_event(self, event: PumpEvent) -> None:
        self._record(lambda: self._pump_event(event))

    async def _pump_event(self, event: PumpEvent) -> None:
        match event.kind:
            case "producer_ended":
                # not awaited: ending the stream stops the pump, which waits for this callback
                self._end_task = asyncio.create_task(self.end("producer finished"))
            case "producer_lost":
                await self._strict_move(S.STALLED, f"no frames from the producer: {event.reason}")
                self._lost_task = asyncio.create_task(self._give_up_on_producer())
            case "producer_resumed":
                if self._lost_task is not None:
                    self._lost_task.cancel()
                await self._strict_move(S.STARTING, "producer resumed")

    async def _give_up_on_producer(self) -> None:
        await asyncio.sleep(self.service.settings.producer_gone_s)
        self._lost_task = None  # from here on this task is the one ending the stream
        if self.reader is not None:
            self.reader.discard_if_abandoned()
        await self.end("producer gone (no frames and no heartbeat)", failed=True)

    async def end(self, reason: str, *, failed: bool = False) -> None:
        """The producer is finished: flush FFmpeg, record stopped (or failed), free the stream."""
        if self._ending:
            return
        self._ending = True
        record = await self.service.store.get(self.stream_id)
        if failed:
            await self.shutdown()
            await self._move(S.FAILED, reason)
        else:
            if record is not None and record.state in ACTIVE:
                await self._move(S.STOPPING, reason)
            await self.shutdown()
            # only a stream still ending: a producer that failed it meanwhile keeps its failure
            await self._move(S.STOPPED, record.reason if record and record.state is S.STOPPING else reason,
                             only_from=ACTIVE | {S.STOPPING})
        self.service.release(self)

    def hand_over(self) -> None:
        """Another encoder has claimed the stream: record nothing more, restart nothing, but
        leave the running FFmpeg on air until ``shutdown`` (when the other one publishes)."""
        self._ending = True
        if self.supervisor is not None:
            self.supervisor.retire()

    async def shutdown(self) -> None:
        """Stop FFmpeg (close stdin, then terminate, then kill) and the pump; close the reader."""
        self._ending = True
        if self._lost_task is not None:
            self._lost_task.cancel()
        if self.supervisor is not None:
            await self.supervisor.stop()
        if self.pump is not None:
            await self.pump.stop()
        if self.reader is not None:
            with contextlib.suppress(Exception):
                await self.reader.aclose()
        await self._stop_recorder()

    # ----- statistics ----------------------------------------------------------------------

    def stats(self) -> StreamStats:
        now = time.monotonic()
        pump_stats = self.pump.stats if self.pump else None
        frames_in = pump_stats.frames_in if pump_stats else 0
        frames_out = pump_stats.frames_written if pump_stats else 0
        then, in_then, out_then = self._stats_at
        elapsed = max(now - then, 1e-6)
        self._stats_at = (now, frames_in, frames_out)
        progress = self.supervisor.progress if self.supervisor else None
        return StreamStats(
            stream_id=self.stream_id,
            encoder_id=self.service.instance,
            encoder_kind=self.encoder_kind,
            frames_in=frames_in,
            frames_out=frames_out,
            dropped=pump_stats.dropped if pump_stats else 0,
            repeated=pump_stats.repeated if pump_stats else 0,
            restarts=self.supervisor.restarts if self.supervisor else 0,
            fps_in=round((frames_in - in_then) / elapsed, 2),
            fps_out=round((frames_out - out_then) / elapsed, 2),
            bitrate_kbps=progress.bitrate_kbps if progress else 0.0,
            speed=progress.speed if progress else 0.0,
            at=time.time(),
        )

"""One stream's producing side: state, frame transport, encoder claim and failover.

Used by the SDK (a CV worker's frames) and by the capture service's sources alike. Sending a
frame is a blocking call of the stream's ``FrameWriter`` in the sender's thread, whatever the
transport; everything else - announcing, watching the encoder's heartbeat and re-announcing
when it disappears, following the stream's state - runs as tasks on the producer's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import numpy as np
from nats.aio.msg import Msg

from framecast.frames import FrameWriter, open_writer
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.errors import BusError, NoResponders, RequestRejected, RequestTimedOut
from framecast.proto.messages import (
    AnySource,
    ClaimAccepted,
    EncoderHeartbeat,
    SdkSource,
    StopStream,
    StreamAnnounce,
    StreamControl,
    StreamEnd,
    StreamRecord,
    TransportKind,
    VideoFormat,
)
from framecast.proto.states import ACTIVE, TERMINAL, IllegalTransition, StreamState
from framecast.proto.store import StateStore

from .metrics import capture_instruments

log = logging.getLogger("framecast.capture")

#: An encoder whose heartbeat is older than this is presumed gone and the stream re-announced.
HEARTBEAT_TIMEOUT_S = 1.5
ANNOUNCE_RETRY_S = 1.0
STOP_WAIT_S = 5.0


class StreamClosed(Exception):
    """The stream was stopped or failed; sending more frames is pointless."""

    def __init__(self, stream_id: str, state: str, reason: str) -> None:
        self.stream_id = stream_id
        self.state = state
        self.reason = reason
        super().__init__(f"stream {stream_id!r} is {state}" + (f": {reason}" if reason else ""))


class Producer:
    """Produces one stream: ``await start()``, then ``send`` frames (from a thread), then ``close()``."""

    def __init__(
        self,
        bus: Bus,
        stream_id: str,
        fmt: VideoFormat,
        *,
        transport: TransportKind = "shm",
        source: AnySource | None = None,
        metadata: dict[str, str] | None = None,
        capture_id: str = "",
    ) -> None:
        self.bus = bus
        self.stream_id = stream_id
        self.format = fmt
        self.transport_kind = transport
        self.source = source or SdkSource()
        self.metadata = dict(metadata or {})
        self.capture_id = capture_id or bus.client_id
        self.store: StateStore
        self.encoder_id = ""
        self.stop_requested = asyncio.Event()
        self._writer: FrameWriter | None = None
        self._closed: StreamClosed | None = None
        self._last_heartbeat = 0.0
        self._heartbeat_sub: Any = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._subs: list[Any] = []
        self.frames_sent = 0
        capture_instruments().producers.add(self)

    # ----- start -------------------------------------------------------------------------

    async def start(self) -> None:
        self.store = await StateStore.open(self.bus, self.capture_id)
        record = await self.store.get(self.stream_id)
        fields = {
            "source": self.source,
            "format": self.format,
            "transport": self.transport_kind,
            "capture_id": self.capture_id,
            "metadata": self.metadata,
            "encoder_id": "",
            "encoder_kind": "",
        }
        if record is None or record.state in TERMINAL:
            await self.store.transition(self.stream_id, StreamState.REQUESTED, **fields)
        elif record.capture_id and record.capture_id != self.capture_id:
            if record.state is not StreamState.REQUESTED:
                raise StreamClosed(
                    self.stream_id, record.state, f"already produced by {record.capture_id}; stop it first"
                )
        else:
            await self.store.update(self.stream_id, **fields)
        self._writer = open_writer(self.stream_id, self.format, self.transport_kind, self.bus.nc)
        self._announce_message = StreamAnnounce(
            stream_id=self.stream_id,
            format=self.format,
            transport=self._writer.transport,
            capture_id=self.capture_id,
            metadata=self.metadata,
        )
        self._subs.append(
            await self.bus.subscribe(subjects.stream_control(self.stream_id), StreamControl, self._on_control)
        )
        self._tasks.append(asyncio.create_task(self._follow_state(), name=f"{self.stream_id}-state"))
        self._tasks.append(asyncio.create_task(self._keep_claimed(), name=f"{self.stream_id}-claim"))

    # ----- frames --------------------------------------------------------------------------

    def send(self, frame: np.ndarray, timestamp_ns: int | None = None) -> int:
        """Hand one frame to the transport; returns its sequence number. Blocking: call it
        from one thread other than the producer's event loop (``FrameWriter.send``). Raises
        ``StreamClosed`` once the stream has stopped or failed, ``FrameFormatError`` for a
        wrong frame, ``FrameTooLargeError`` for one NATS cannot carry."""
        if self._closed is not None:
            raise self._closed
        assert self._writer is not None, "send() before start()"
        seq = self._writer.send(frame, timestamp_ns)
        self.frames_sent += 1
        return seq

    # ----- encoder claim and failover --------------------------------------------------------

    async def _keep_claimed(self) -> None:
        """Announce until an encoder claims the stream; re-announce when its heartbeat stops."""
        while not self.stop_requested.is_set():
            if not self.encoder_id:
                await self._announce()
            elif time.monotonic() - self._last_heartbeat > HEARTBEAT_TIMEOUT_S:
                log.warning(
                    "encoder %s stopped sending heartbeats; re-announcing %s",
                    self.encoder_id, self.stream_id, extra={"stream_id": self.stream_id},
                )
                await self._drop_encoder()
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), HEARTBEAT_TIMEOUT_S / 3 if self.encoder_id else ANNOUNCE_RETRY_S)

    async def _announce(self) -> None:
        try:
            claim = await self.bus.request(
                subjects.ENCODER_CLAIM, self._announce_message, ClaimAccepted, service="encoder", timeout=5
            )
        except NoResponders:
            await self._waiting("no encoder is running; waiting for one")
            return
        except (RequestTimedOut, RequestRejected) as exc:
            await self._waiting(f"no encoder took the stream yet: {exc}")
            return
        self.encoder_id = claim.encoder_id
        self._last_heartbeat = time.monotonic()

        async def on_heartbeat(_message: EncoderHeartbeat, _msg: Msg) -> None:
            self._last_heartbeat = time.monotonic()

        self._heartbeat_sub = await self.bus.subscribe(
            subjects.encoder_heartbeat(claim.encoder_id), EncoderHeartbeat, on_heartbeat
        )
        log.info("encoder %s claimed %s (%s)", claim.encoder_id, self.stream_id, claim.encoder_kind,
                 extra={"stream_id": self.stream_id})

    async def _drop_encoder(self) -> None:
        self.encoder_id = ""
        if self._heartbeat_sub is not None:
            with contextlib.suppress(Exception):
                await self._heartbeat_sub.unsubscribe()
            self._heartbeat_sub = None

    async def _waiting(self, reason: str) -> None:
        """Say why a stream no encoder has taken yet is waiting. Only then: a stream an encoder
        took keeps the reason its encoder wrote (after a NATS outage the producer re-announces,
        and a failed announce must not rewrite a live stream's reason with a stale excuse)."""
        record = await self.store.get(self.stream_id)
        if record is not None and record.state is StreamState.REQUESTED and record.reason != reason:
            await self.store.update(self.stream_id, reason=reason, only_in=frozenset({StreamState.REQUESTED}))

    # ----- state and control -------------------------------------------------------------------

    async def _follow_state(self) -> None:
        async for _, record in self.store.watch(self.stream_id):
            if record is None:
                continue
            if record.state in TERMINAL or record.state is StreamState.STOPPING:
                self._closed = StreamClosed(self.stream_id, record.state, record.reason)
                self.stop_requested.set()
            if record.state in TERMINAL:
                return

    async def _on_control(self, message: StreamControl, _msg: Msg) -> None:
        if isinstance(message, StopStream):
            log.info("stop requested for %s: %s", self.stream_id, message.reason, extra={"stream_id": self.stream_id})
            self._closed = StreamClosed(self.stream_id, StreamState.STOPPING, message.reason)
            self.stop_requested.set()

    async def set_metadata(self, labels: dict[str, str]) -> None:
        """Replace the stream's labels (shown by the gateway, carried by later events)."""
        self.metadata = dict(labels)
        await self.store.update(self.stream_id, metadata=self.metadata, only_in=ACTIVE)

    def stop_reason(self, default: str = "producer finished") -> str:
        """Why the stream is ending: the stop request's reason, else ``default``."""
        return self._closed.reason if self._closed is not None and self._closed.reason else default

    async def wait_stopped(self) -> StreamRecord | None:
        """Wait until the stream is stopped or failed (an encoder confirms the end)."""
        async for _, record in self.store.watch(self.stream_id):
            if record is not None and record.state in TERMINAL:
                return record
        return None

    # ----- end ----------------------------------------------------------------------------------

    async def close(self, reason: str = "producer finished", *, failed: bool = False) -> None:
        """End the stream: tell the encoder, wait for it to confirm, release the transport."""
        if self._closed is None:
            self._closed = StreamClosed(self.stream_id, StreamState.STOPPING, reason)
        capture_instruments().producers.discard(self)
        self.stop_requested.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self._finish(reason, failed)
        except BusError as exc:
            log.warning("could not record the end of %s: %s", self.stream_id, exc)
        finally:
            for sub in self._subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            await self._drop_encoder()
            if self._writer is not None:
                self._writer.close()

    async def _finish(self, reason: str, failed: bool) -> None:
        record = await self.store.get(self.stream_id)
        if record is None or record.state in TERMINAL:
            return
        if failed:
            await self.store.transition(self.stream_id, StreamState.FAILED, reason=reason)
            return
        if record.state is StreamState.STOPPING:
            reason = record.reason or reason  # whoever asked for the stop said why
        else:
            with contextlib.suppress(IllegalTransition):
                await self.store.transition(self.stream_id, StreamState.STOPPING, reason=reason)
        if self._writer is not None:
            self._writer.close()  # a ring's reader sees the closed flag at once and keeps its mapping
        await self.bus.publish(
            subjects.stream_control(self.stream_id), StreamEnd(stream_id=self.stream_id, reason=reason)
        )
        if self.encoder_id:
            try:
                await asyncio.wait_for(self.wait_stopped(), STOP_WAIT_S)
                return
            except TimeoutError:
                log.warning("encoder %s did not confirm the end of %s", self.encoder_id, self.stream_id)
        with contextlib.suppress(IllegalTransition):
            await self.store.transition(self.stream_id, StreamState.STOPPED, reason=reason)

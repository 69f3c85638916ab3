"""One stream's producing side: state, frame transport, encoder placement, claim and failover.

Used by the SDK (a CV worker's frames) and by the capture service's sources alike. Sending a
frame is a blocking call of the stream's ``FrameWriter`` in the sender's thread, whatever the
transport; everything else - placing the stream on an encoder (``placement``), watching the
encoders' heartbeats and placing again when its encoder falls silent, following the stream's
state - runs as tasks on the producer's event loop. When placement moves the stream to an
encoder on another host, the producer switches from its shared-memory ring to NATS without the
sender noticing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import numpy as np
from nats.aio.msg import Msg

from framecast.frames import FrameWriter, host_identity, open_writer
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.errors import BusError, NoResponders, RequestRejected, RequestTimedOut
from framecast.proto.messages import (
    AnySource,
    ClaimAccepted,
    EncoderHeartbeat,
    EncoderPing,
    Reassign,
    SdkSource,
    StopStream,
    StreamAnnounce,
    StreamControl,
    StreamEnd,
    StreamRecord,
    TransportChoice,
    TransportKind,
    VideoFormat,
)
from framecast.proto.states import ACTIVE, TERMINAL, IllegalTransition, StreamState
from framecast.proto.store import StateStore
from framecast.runtime.lifecycle import cancel_all

from .metrics import capture_instruments
from .placement import Fleet, Unplaced, place

log = logging.getLogger("framecast.capture")

#: An encoder whose heartbeat is older than this is presumed gone and the stream re-announced.
HEARTBEAT_TIMEOUT_S = 1.5
FAILOVER_CHECK_S = 0.1
"""How often the producer looks at its encoder's last heartbeat (a comparison: cheap)."""
ANNOUNCE_RETRY_S = 1.0
FLEET_FIRST_S = 0.6
"""How long a new producer waits for the encoders to answer its ping (an encoder that predates
the ping still heartbeats within half a second)."""
FLEET_SETTLE_S = 0.05
"""After the first answer, how long the others get: every encoder answers the same ping."""
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
        transport: TransportChoice = "auto",
        source: AnySource | None = None,
        metadata: dict[str, str] | None = None,
        capture_id: str = "",
        host: str = "",
        fleet: Fleet | None = None,
    ) -> None:
        """``host`` is where this producer runs as far as shared memory goes (default: this
        machine, ``framecast.frames.host_identity``). ``fleet``: the encoders' heartbeats as
        a service producing many streams already follows them (else this producer does)."""
        self.bus = bus
        self.stream_id = stream_id
        self.format = fmt
        self.transport_choice = transport
        self.host = host_identity(host)
        self.fleet = fleet or Fleet()
        self._follows_fleet = fleet is None
        self.source = source or SdkSource()
        self.metadata = dict(metadata or {})
        self.capture_id = capture_id or bus.client_id
        self.store: StateStore
        self.encoder_id = ""
        self.stop_requested = asyncio.Event()
        self._nudge = asyncio.Event()  # wakes the claim loop: a stop, or a hand-over to do now
        self._writer: FrameWriter | None = None
        self._writers: dict[TransportKind, FrameWriter] = {}
        self._refused: dict[str, float] = {}  # encoder id -> when it last refused the stream
        self._closed: StreamClosed | None = None
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
            "transport": None if self.transport_choice == "auto" else self.transport_choice,
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
        self._writer = self._writer_for("nats" if self.transport_choice == "nats" else "shm")
        if self._follows_fleet:
            self._subs.append(
                await self.bus.subscribe(subjects.ENCODER_HEARTBEAT_ALL, EncoderHeartbeat, self._on_heartbeat)
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
        writer = self._writer
        assert writer is not None, "send() before start()"
        seq = writer.send(frame, timestamp_ns)
        self.frames_sent += 1
        return seq

    # ----- placement, claim and failover --------------------------------------------------------

    def _writer_for(self, kind: TransportKind) -> FrameWriter:
        """The stream's writer on ``kind``, opened the first time placement needs it (on the
        loop: a NATS writer belongs to the client's loop). Both stay open until the end: a
        sender may be inside ``send`` of the other one when placement switches."""
        if kind not in self._writers:
            self._writers[kind] = open_writer(self.stream_id, self.format, kind, self.bus.nc)
        return self._writers[kind]

    async def _on_heartbeat(self, heartbeat: EncoderHeartbeat, _msg: Msg) -> None:
        self.fleet.heard(heartbeat)

    async def _keep_claimed(self) -> None:
        """Place and announce until an encoder claims the stream; place again when its
        encoder falls silent. A refusal from the chosen encoder is followed at once by the
        next best one."""
        await self._learn_fleet()
        while not self.stop_requested.is_set():
            if not self.encoder_id:
                if await self._announce():
                    continue
            elif self.fleet.silent_for(self.encoder_id) > HEARTBEAT_TIMEOUT_S:
                log.warning(
                    "encoder %s stopped sending heartbeats; placing %s again",
                    self.encoder_id, self.stream_id, extra={"stream_id": self.stream_id},
                )
                self._refused[self.encoder_id] = time.monotonic()
                self.encoder_id = ""
                continue
            if not self.encoder_id and not self.fleet.alive():
                await self.fleet.wait_heard(ANNOUNCE_RETRY_S)  # placed as soon as an encoder is heard
                continue
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._nudge.wait(), FAILOVER_CHECK_S if self.encoder_id else ANNOUNCE_RETRY_S)
            self._nudge.clear()

    async def _learn_fleet(self) -> None:
        """Ask every encoder for a heartbeat now, so the first placement sees the whole fleet
        rather than whichever encoder happened to beat first (unless a shared fleet already
        knows them)."""
        if self.fleet.alive():
            return
        try:
            await self.bus.publish(subjects.ENCODER_PING, EncoderPing(asked_by=self.capture_id))
        except BusError:
            return
        if self.fleet.alive() or await self.fleet.wait_heard(FLEET_FIRST_S):
            await asyncio.sleep(FLEET_SETTLE_S)

    async def _announce(self) -> bool:
        """One placement and claim; True when the chosen encoder refused and the next may be
        asked at once."""
        now = time.monotonic()
        self._refused = {eid: at for eid, at in self._refused.items() if now - at < self.fleet.fresh_s}
        alive = self.fleet.alive()
        placement = place(alive, host=self.host, choice=self.transport_choice, stream_id=self.stream_id,
                          exclude=self._refused)
        if isinstance(placement, Unplaced):  # none heard from yet, or none with room
            await self._waiting(placement.reason)
            return False
        chosen, why = placement.encoder_id, placement.reason
        writer = self._writer_for(placement.transport)
        announce = StreamAnnounce(stream_id=self.stream_id, format=self.format, transport=writer.transport,
                                  capture_id=self.capture_id, metadata=self.metadata, placement=why)
        try:
            claim = await self.bus.request(subjects.encoder_claim(chosen), announce, ClaimAccepted,
                                           service="encoder", timeout=5)
        except (NoResponders, RequestRejected) as exc:  # gone or full since its heartbeat: the next best one, now
            self._refused[chosen] = time.monotonic()
            log.info("encoder %s did not take %s (%s); placing it again", chosen, self.stream_id, exc,
                     extra={"stream_id": self.stream_id})
            return True
        except RequestTimedOut as exc:
            await self._waiting(f"no encoder took the stream yet: {exc}")
            return False
        self._writer = writer
        self.encoder_id = claim.encoder_id
        self.fleet.claimed_by(claim.encoder_id)
        log.info("encoder %s claimed %s (%s): %s", claim.encoder_id, self.stream_id, claim.encoder_kind, why,
                 extra={"stream_id": self.stream_id})
        return False

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
                self._nudge.set()
            if record.state in TERMINAL:
                return

    async def _on_control(self, message: StreamControl, _msg: Msg) -> None:
        if isinstance(message, StopStream):
            log.info("stop requested for %s: %s", self.stream_id, message.reason, extra={"stream_id": self.stream_id})
            self._closed = StreamClosed(self.stream_id, StreamState.STOPPING, message.reason)
            self.stop_requested.set()
            self._nudge.set()
        elif isinstance(message, Reassign) and message.from_encoder == self.encoder_id:
            log.info("encoder %s hands %s over (%s); placing it again", message.from_encoder, self.stream_id,
                     message.reason, extra={"stream_id": self.stream_id})
            self._refused[message.from_encoder] = time.monotonic()
            self.encoder_id = ""
            self._nudge.set()

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
        await cancel_all(self._tasks)
        try:
            await self._finish(reason, failed)
        except BusError as exc:
            log.warning("could not record the end of %s: %s", self.stream_id, exc)
        finally:
            for sub in self._subs:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            self.encoder_id = ""
            for writer in self._writers.values():
                writer.close()

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
        for writer in self._writers.values():
            writer.close()  # a ring's reader sees the closed flag at once and keeps its mapping
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

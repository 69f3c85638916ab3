"""The encoder service: claims announced streams and publishes each one.

Producers place each stream on an encoder from the heartbeats every instance sends about twice
a second (its host, free slots, hardware sessions left, whether it is draining), and ask that
one directly (producers of the version before placement ask the ``encoders`` queue group, where
one member answers). An instance at capacity refuses and the producer places the stream again.
A producer whose encoder falls silent places the stream on another one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
from nats.aio.msg import Msg

from framecast import frames
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.errors import BusError
from framecast.proto.messages import (
    ClaimAccepted,
    DrainEncoder,
    Draining,
    EncoderHeartbeat,
    EncoderPing,
    Reassign,
    Rejected,
    StreamAnnounce,
    StreamControl,
    StreamEnd,
    StreamStats,
    TokenIssued,
    TokenRequest,
)
from framecast.proto.states import ACTIVE, TERMINAL, IllegalTransition
from framecast.proto.states import StreamState as S
from framecast.proto.store import StateStore
from framecast.runtime.ffmpeg import find_ffmpeg
from framecast.runtime.lease import ServiceTokens, TokenLease
from framecast.runtime.lifecycle import Runtime
from framecast.runtime.mediamtx_api import MediaMTXClient, MediaMTXError
from framecast.runtime.mediamtx_nodes import MediaMTXNode, choose_node, origins

from .ingest import IngestMeter
from .metrics import encoder_instruments
from .paths import PathEntries
from .probe import probe
from .profiles import SOFTWARE_ENCODER
from .settings import EncoderSettings
from .supervisor import server_unreachable
from .worker import StreamWorker, WorkerError

log = logging.getLogger("framecast.encoder")

HAND_OVER_TIMEOUT_S = 30.0
"""How long a draining encoder waits for another to claim each stream before keeping it."""
OVERLAP_TIMEOUT_S = 10.0
"""How long it stays on air after the claim, waiting for the new encoder to publish."""
TOKEN_REUSE_MARGIN_S = 30.0
"""A publish token with less validity left than this is not used again."""
HARDWARE = ("h264_nvenc", "h264_qsv", "h264_vaapi", "h264_videotoolbox")


class EncoderService:
    def __init__(self, runtime: Runtime[EncoderSettings], bus: Bus, store: StateStore,
                 ffmpeg: str, encoder_kind: str) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.instance = runtime.instance
        self.bus = bus
        self.store = store
        self.ffmpeg = ffmpeg
        self.encoder_kind = encoder_kind
        self.host = frames.host_identity(self.settings.host_id)
        self.nodes = origins(self.settings.nodes())
        self._api_tokens = ServiceTokens(bus, self.instance)
        self._apis: dict[str, MediaMTXClient] = {}
        self.paths = PathEntries(self._api)
        self.ingest = IngestMeter(self._api)
        self._published_on: dict[str, MediaMTXNode] = {}
        self.draining = False
        self.workers: dict[str, StreamWorker] = {}
        self._claiming: set[str] = set()
        self._counted: dict[str, tuple[int, int]] = {}
        self.latest: dict[str, StreamStats] = {}
        encoder_instruments().services.add(self)

    @property
    def hw_sessions_left(self) -> int | None:
        if self.encoder_kind not in HARDWARE or not self.settings.hw_sessions:
            return None
        used = sum(1 for w in self.workers.values() if w.encoder_kind in HARDWARE)
        return max(self.settings.hw_sessions - used, 0)

    # ----- claims ----------------------------------------------------------------------------

    async def on_announce(self, announce: StreamAnnounce, _msg: Msg) -> ClaimAccepted | Rejected:
        stream_id = announce.stream_id
        existing = self.workers.get(stream_id)
        if existing is not None and existing.transport_name == frames.address(announce.transport):
            return ClaimAccepted(encoder_id=self.instance, encoder_kind=existing.encoder_kind)
        if stream_id in self._claiming:
            return Rejected(code="conflict", message=f"encoder {self.instance} is already taking {stream_id}")
        if self.draining:
            return Rejected(code="unavailable", message=f"encoder {self.instance} is draining")
        if len(self.workers) >= self.settings.max_streams:
            return Rejected(code="unavailable", message=f"encoder {self.instance} is at capacity "
                            f"({self.settings.max_streams} streams)")
        if self.hw_sessions_left == 0:
            return Rejected(code="unavailable", message=f"encoder {self.instance} has no {self.encoder_kind} "
                            "sessions left")
        record = await self.store.get(stream_id)
        if record is None or record.state not in ACTIVE:
            state = record.state if record else "unknown"
            return Rejected(code="conflict", message=f"stream {stream_id} is {state}, not waiting for an encoder")
        self._claiming.add(stream_id)
        try:
            if existing is not None:
                await existing.shutdown()
                self.workers.pop(stream_id, None)
            worker = StreamWorker(self, announce)
            try:
                await worker.open_reader()
            except WorkerError as exc:
                return Rejected(code="bad_request", message=f"cannot read frames of {stream_id}: {exc}")
            previous = record.encoder_id if record.encoder_id and record.encoder_id != self.instance else ""
            self.workers[stream_id] = worker
            await worker.start(previous)
        finally:
            self._claiming.discard(stream_id)
        log.info("claimed %s (%dx%d@%d, %s)", stream_id, announce.format.width, announce.format.height,
                 announce.format.fps, self.encoder_kind, extra={"stream_id": stream_id})
        return ClaimAccepted(encoder_id=self.instance, encoder_kind=self.encoder_kind)

    def release(self, worker: StreamWorker) -> None:
        """Forget a worker whose stream has ended (the worker stops its own FFmpeg), and send
        its final statistics: the frames and drops since the last periodic report are not lost."""
        if self.workers.get(worker.stream_id) is worker:
            del self.workers[worker.stream_id]
            self._counted.pop(worker.stream_id, None)
            last = self.latest.pop(worker.stream_id, None)
            final = msgspec.structs.replace(worker.stats(), final=True,
                                            bitrate_kbps=last.bitrate_kbps if last else 0.0)
            self.runtime.spawn(self._publish_final(final), f"final-stats-{worker.stream_id}")
            node = self._published_on.pop(worker.stream_id, None)
            if node is not None:
                self.runtime.spawn(self._forget_if_ended(node, worker.stream_id), f"forget-{worker.stream_id}")

    async def _forget_if_ended(self, node: MediaMTXNode, stream_id: str) -> None:
        """The stream's path entry goes once the stream is ending or has ended, not when another
        encoder has taken it over."""
        with contextlib.suppress(BusError):
            record = await self.store.get(stream_id)
            if record is None or record.state in TERMINAL or record.state is S.STOPPING:
                await self.paths.forget(node, stream_id)

    async def _publish_final(self, stats: StreamStats) -> None:
        with contextlib.suppress(BusError):
            await self.bus.publish(subjects.stats(stats.stream_id), stats)

    async def on_control(self, message: StreamControl, msg: Msg) -> None:
        if isinstance(message, StreamEnd) and (worker := self.workers.get(message.stream_id)):
            await worker.end(message.reason or "producer finished")

    # ----- drain -------------------------------------------------------------------------------

    async def on_drain(self, request: DrainEncoder, _msg: Msg) -> Draining:
        """Take no new stream, and hand each one over: its producer places it elsewhere."""
        if not self.draining:
            self.draining = True
            log.info("draining: %d stream(s) to hand over, no new ones (%s)", len(self.workers), request.reason)
            await self.beat()
            for worker in list(self.workers.values()):
                self.runtime.spawn(self._hand_over(worker, request.reason), f"hand-over-{worker.stream_id}")
        return Draining(encoder_id=self.instance, streams=sorted(self.workers))

    async def _hand_over(self, worker: StreamWorker, reason: str) -> None:
        """Ask the producer to place the stream elsewhere. Once another encoder has claimed it,
        this one records nothing more and restarts nothing, but stays on air while the other
        starts: MediaMTX lets the new publisher replace the old (``overridePublisher``), so
        viewers see the shortest gap. If the other's first attempt fails instead (a server that
        refuses a second publisher), this one gets out of its way at once."""
        stream_id = worker.stream_id
        try:
            await self.bus.publish(subjects.stream_control(stream_id),
                                   Reassign(stream_id=stream_id, from_encoder=self.instance, reason=reason))
            async with asyncio.timeout(HAND_OVER_TIMEOUT_S):
                async for _, record in self.store.watch(stream_id):
                    if record is None or record.state in TERMINAL or record.encoder_id not in ("", self.instance):
                        break
        except (BusError, TimeoutError) as exc:
            log.warning("%s: not handed over (%s); this encoder keeps it", stream_id, exc or "no encoder took it",
                        extra={"stream_id": stream_id})
            return
        worker.hand_over()
        with contextlib.suppress(BusError, TimeoutError):
            async with asyncio.timeout(OVERLAP_TIMEOUT_S):
                async for _, record in self.store.watch(stream_id):
                    if record is None or record.state is not S.STARTING:
                        break
        if self.workers.get(stream_id) is worker:
            await worker.shutdown()
            self.release(worker)
            log.info("%s handed over", stream_id, extra={"stream_id": stream_id})

    # ----- publish credentials ---------------------------------------------------------------

    def publish_url_factory(self, stream_id: str) -> Callable[[str], Awaitable[str]]:
        """A fresh publish URL per FFmpeg (re)start, on the stream's MediaMTX node (``place``:
        another one when a run could not reach it). The token travels in the URL's query
        (``?token=``), which MediaMTX hands to the auth hook as ``token`` for RTSP. Not as the
        password: FFmpeg's RTSP client keeps at most 127 bytes of ``user:password``, so a
        440-character JWT would arrive cut and be refused as malformed (docs/mediamtx.md, "RTSP").

        When auth cannot be asked (NATS is away), the last token is used again while it is
        still valid for TOKEN_REUSE_MARGIN_S: an FFmpeg restart during a bus outage keeps the
        stream on air instead of taking it off for want of a token."""
        last: TokenLease | None = None
        node: MediaMTXNode | None = None
        lost: set[str] = set()

        async def url(why: str) -> str:
            nonlocal last, node
            if node is not None and len(self.nodes) > 1 and server_unreachable(why) and "no publish URL" not in why:
                log.warning("%s: MediaMTX node %s is unreachable (%s); moving the stream to another node",
                            stream_id, node.name, why, extra={"stream_id": stream_id})
                lost.add(node.name)
                node = None
            if node is None:
                node = await self.place(stream_id, lost)
                lost.clear()
            self._published_on[stream_id] = node
            await self.paths.prepare(node, stream_id)
            base = f"{node.rtsp.rstrip('/')}/{stream_id}"
            if self.settings.publish_auth == "none":
                return base
            try:
                last = TokenLease(await self.bus.request(
                    subjects.AUTH_TOKEN_ISSUE,
                    TokenRequest(role="publisher", stream_id=stream_id, subject=self.instance),
                    TokenIssued, service="auth", timeout=3,
                ))
            except BusError as exc:
                if last is None or last.remaining() < TOKEN_REUSE_MARGIN_S:
                    raise
                log.warning("%s: no new publish token (%s); using the previous one until it expires",
                            stream_id, exc, extra={"stream_id": stream_id})
            return f"{base}?token={last.token}"

        return url

    async def place(self, stream_id: str, lost: set[str]) -> MediaMTXNode:
        """The MediaMTX node ``stream_id`` publishes to: the one with the fewest paths, by the
        control APIs that answer within a second; a stable choice by the stream id when none
        does. Nodes in ``lost`` are passed over unless all are. Recorded in the stream's record
        whenever the deployment lists several nodes (edges included), so the gateway and the
        stream list can say where it is."""
        if len(self.nodes) == 1:
            if len(self.settings.nodes()) > 1:
                await self._record_node(stream_id, self.nodes[0])
            return self.nodes[0]

        async def load(node: MediaMTXNode) -> tuple[str, int] | None:
            if not node.api or node.name in lost:
                return None
            try:
                async with asyncio.timeout(1.0):
                    page = await self._api(node).list_paths_page(0, 1)
            except (MediaMTXError, TimeoutError):
                return None
            return node.name, page.itemCount

        loads = dict(answer for answer in await asyncio.gather(*(load(n) for n in self.nodes)) if answer)
        chosen = (choose_node(self.nodes, stream_id, loads=loads, exclude=lost)
                  or choose_node(self.nodes, stream_id, loads=loads))
        assert chosen is not None
        await self._record_node(stream_id, chosen)
        return chosen

    async def _record_node(self, stream_id: str, node: MediaMTXNode) -> None:
        log.info("%s: publishing on MediaMTX node %s", stream_id, node.name, extra={"stream_id": stream_id})
        with contextlib.suppress(BusError, IllegalTransition):
            await self.store.update(stream_id, mediamtx_node=node.name, only_in=ACTIVE)

    async def close_apis(self) -> None:
        for api in self._apis.values():
            await api.aclose()

    def _api(self, node: MediaMTXNode) -> MediaMTXClient:
        if node.name not in self._apis:
            self._apis[node.name] = MediaMTXClient(node.api, self._api_tokens)
        return self._apis[node.name]

    # ----- heartbeats and statistics ---------------------------------------------------------

    async def heartbeat(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.settings.heartbeat_s)

    async def beat(self, _ping: EncoderPing | None = None, _msg: Msg | None = None) -> None:
        """One heartbeat: liveness, host and room; also the answer to a producer's ping."""
        with contextlib.suppress(BusError):
            await self.bus.publish(
                subjects.encoder_heartbeat(self.instance),
                EncoderHeartbeat(encoder_id=self.instance, streams=sorted(self.workers),
                                 capacity=self.settings.max_streams, active=len(self.workers),
                                 hw_sessions_left=self.hw_sessions_left, at=time.time(),
                                 host=self.host, draining=self.draining),
            )

    async def report_stats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.stats_s)
            instruments = encoder_instruments()
            workers = list(self.workers.values())
            received = await self.ingest.rates({w.stream_id: self._published_on[w.stream_id] for w in workers
                                                if w.stream_id in self._published_on})
            for worker in workers:
                stats_message = worker.stats()
                if worker.stream_id in received:  # FFmpeg reports no bitrate for RTSP; MediaMTX counts
                    stats_message = msgspec.structs.replace(stats_message, bitrate_kbps=received[worker.stream_id])
                self.latest[worker.stream_id] = stats_message
                with contextlib.suppress(BusError):
                    await self.bus.publish(subjects.stats(worker.stream_id), stats_message)
                stats = worker.pump.stats if worker.pump else None
                if stats is None:
                    continue
                attributes = {"stream.id": worker.stream_id, "encoder.kind": worker.encoder_kind}
                written, dropped = self._counted.get(worker.stream_id, (0, 0))
                instruments.frames.add(stats.frames_written - written, attributes)
                instruments.dropped.add(stats.dropped - dropped, attributes)
                self._counted[worker.stream_id] = (stats.frames_written, stats.dropped)

    async def stop_all(self) -> None:
        """Service shutdown: ask every producer to place its stream elsewhere now (instead of
        after the heartbeat timeout), then stop every FFmpeg."""
        self.draining = True
        workers, self.workers = list(self.workers.values()), {}
        for worker in workers:
            with contextlib.suppress(BusError):
                await self.bus.publish(subjects.stream_control(worker.stream_id),
                                       Reassign(stream_id=worker.stream_id, from_encoder=self.instance,
                                                reason=f"encoder {self.instance} is stopping"))
        await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)


async def choose_encoder(ffmpeg: str, forced: str) -> str:
    result = await probe(ffmpeg, forced=forced or None)
    for name, why in result.reasons.items():
        log.info("encoder %s passed over: %s", name, why)
    log.info("encoding with %s", result.chosen, extra={"encoder_kind": result.chosen})
    return result.chosen


@contextlib.asynccontextmanager
async def lifespan(runtime: Runtime[EncoderSettings]) -> AsyncIterator[EncoderService]:
    ffmpeg = find_ffmpeg()
    encoder_kind = await choose_encoder(ffmpeg, runtime.settings.encoder)
    bus = await Bus.connect(runtime.settings.nats_url, client_id=runtime.instance)
    runtime.require(lambda: bus.connected, "not connected to NATS (reconnecting)")
    service: EncoderService | None = None
    try:
        store = await StateStore.open(bus, runtime.instance)
        service = EncoderService(runtime, bus, store, ffmpeg, encoder_kind or SOFTWARE_ENCODER)
        # producers of the version before placement announce to the queue group: still answered
        await bus.subscribe(subjects.ENCODER_CLAIM, StreamAnnounce, service.on_announce, queue=subjects.ENCODER_QUEUE)
        await bus.subscribe(subjects.encoder_claim(runtime.instance), StreamAnnounce, service.on_announce)
        await bus.subscribe(subjects.ENCODER_PING, EncoderPing, service.beat)
        await bus.subscribe(subjects.encoder_drain(runtime.instance), DrainEncoder, service.on_drain)
        await bus.subscribe(subjects.stream_control("*"), StreamControl, service.on_control)
        runtime.spawn(service.heartbeat(), "heartbeat")
        runtime.spawn(service.report_stats(), "stats")
        yield service
    finally:
        if service is not None:
            await runtime.cancel_children()
            await service.stop_all()
            await service.close_apis()
        await bus.close()

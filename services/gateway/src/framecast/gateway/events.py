"""What the gateway hears from the bus, and the live event stream it relays to browsers.

``StateView`` is the gateway's picture of every stream: the current records (loaded from the
state KV bucket, then kept current by its watch), the latest encoder statistics, and what
MediaMTX says about each path (written by the reconciler). API reads come from it, never
from a round trip to NATS.

``event_stream`` is one client's ``GET /api/events``: lifecycle transitions replayed from the
JetStream events stream (so ``Last-Event-ID`` resumes exactly where the client left off), and
statistics fanned out from the view's single subscription, with keep-alive comments between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Literal

from litestar.response import ServerSentEventMessage
from nats.aio.msg import Msg

from framecast.proto import codec, subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import StreamRecord, StreamStats, StreamTransition
from framecast.proto.states import TERMINAL, StreamState
from framecast.proto.store import StateStore

from .mediamtx import PathHealth
from .metrics import gateway_instruments
from .viewers import Viewer

__all__ = ["MediaMTXStatus", "StateView", "event_stream", "last_sequence"]

log = logging.getLogger("framecast.gateway.events")

MediaMTXStatus = Literal["unknown", "ok", "unreachable"]
CLIENT_QUEUE = 256
"""Events buffered per client; a client that falls this far behind misses statistics, never
transitions (those wait in JetStream until the client reads on)."""

Item = tuple[Literal["transition"], int, StreamTransition] | tuple[Literal["stats"], int, StreamStats]


class StateView:
    """Every stream as the gateway currently sees it; changed only from the event loop."""

    def __init__(self) -> None:
        self.records: dict[str, StreamRecord] = {}
        self.stats: dict[str, StreamStats] = {}
        self.paths: dict[str, PathHealth] = {}
        self.node_readers: dict[str, int] = {}
        """Readers per MediaMTX node that answered the last poll (viewers sent there since added)."""
        self.mediamtx: MediaMTXStatus = "unknown"
        self.mediamtx_problem = ""
        self.loaded = False
        self.closing = False
        self._changed = asyncio.Event()
        self._listeners: set[asyncio.Queue[Item | None]] = set()
        gateway_instruments().views.add(self)

    # ----- fed from the bus ------------------------------------------------------------------

    async def follow(self, store: StateStore) -> None:
        """Load every record, then apply each change of the state bucket until cancelled."""
        for record in await store.list():
            self._apply(record.stream_id, record)
        self.loaded = True
        self._notify()
        async for stream_id, record in store.watch():
            self._apply(stream_id, record)
            self._notify()

    def _apply(self, stream_id: str, record: StreamRecord | None) -> None:
        if record is None:
            self.records.pop(stream_id, None)
            self.stats.pop(stream_id, None)
            return
        self.records[stream_id] = record
        if record.state in TERMINAL or record.state is StreamState.REQUESTED:
            self.stats.pop(stream_id, None)  # numbers of a run that is over

    async def on_stats(self, stats: StreamStats, _msg: Msg) -> None:
        """Handler of ``subjects.STATS_ALL``: keep the latest and pass it to every event client."""
        record = self.records.get(stats.stream_id)
        if record is not None and (record.state in TERMINAL or record.state is StreamState.REQUESTED):
            return  # a late report of a run that has ended
        self.stats[stats.stream_id] = stats
        self._notify()
        for queue in self._listeners:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(("stats", 0, stats))

    def set_mediamtx(self, status: MediaMTXStatus, problem: str = "") -> None:
        self.mediamtx = status
        self.mediamtx_problem = problem

    # ----- read by the API -------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` holds after a change of a record or statistics; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate():
            changed = self._changed
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return True

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def end_event_streams(self) -> None:
        """Shutting down: end every open event stream now (its client resumes elsewhere with
        Last-Event-ID) instead of holding the server's graceful shutdown open."""
        self.closing = True
        for queue in self._listeners:
            while not queue.empty():
                queue.get_nowait()
            queue.put_nowait(None)

    @contextlib.contextmanager
    def listening(self, queue: asyncio.Queue[Item | None]) -> Iterator[None]:
        """Put every new statistics report into ``queue`` (dropped when it is full) meanwhile."""
        self._listeners.add(queue)
        try:
            yield
        finally:
            self._listeners.discard(queue)


async def last_sequence(bus: Bus) -> int:
    """The sequence of the newest stored transition: "from now on" for a new event client."""
    info = await bus.js.stream_info(subjects.EVENTS_STREAM)
    return int(info.state.last_seq)


async def event_stream(
    view: StateView,
    store: StateStore,
    viewer: Viewer,
    *,
    stream_id: str | None,
    after: int,
    keepalive_s: float,
) -> AsyncIterator[ServerSentEventMessage]:
    """Transitions after sequence ``after`` and new statistics, for the streams ``viewer`` may see.

    It lasts until the client disconnects or the gateway shuts down; either way the JetStream
    consumer's subscription ends with it.
    """

    def wanted(of: str) -> bool:
        return (stream_id is None or of == stream_id) and viewer.may_watch(of)

    queue: asyncio.Queue[Item | None] = asyncio.Queue(CLIENT_QUEUE)

    async def transitions() -> None:
        async for sequence, transition in store.history(stream_id, after=after):
            if wanted(transition.stream_id):
                await queue.put(("transition", sequence, transition))

    with view.listening(queue):
        pump = asyncio.create_task(transitions(), name="sse-transitions")
        gateway_instruments().event_streams.add(1)
        try:
            yield ServerSentEventMessage(comment="framecast events", data=None)
            while not view.closing:
                try:
                    item = await asyncio.wait_for(queue.get(), keepalive_s)
                except TimeoutError:
                    if pump.done():  # the consumer failed: end the stream, the client reconnects
                        log.warning("event stream ends: %s", pump.exception() or "the events consumer closed")
                        return
                    yield ServerSentEventMessage(comment="keep-alive", data=None)
                    continue
                if item is None:
                    return
                kind, sequence, message = item
                if kind == "stats" and not wanted(message.stream_id):
                    continue
                yield ServerSentEventMessage(
                    event=kind,
                    id=sequence if kind == "transition" else None,
                    data=codec.encode(message).decode(),
                )
        finally:
            gateway_instruments().event_streams.add(-1)
            pump.cancel()  # its subscription ends in its own task, even if this one is cancelled again
            pump.add_done_callback(_ended)
            log.debug("event client left (stream %s)", stream_id or "*")


def _ended(pump: asyncio.Task[None]) -> None:
    """Collect how a client's consumer task ended (NATS may be draining by then: that is fine)."""
    if not pump.cancelled() and (error := pump.exception()) is not None:
        log.debug("event consumer ended with %r", error)

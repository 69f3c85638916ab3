"""Confirms from MediaMTX's control API that a stream is really served, and notices when it stops.

The encoder can only say that FFmpeg publishes; MediaMTX alone knows whether readers can get
the path, and with which codec and profile. Each poll moves a ``publishing`` stream that
MediaMTX serves as H264 to ``live``, and a ``live`` stream whose path is gone or unavailable to
``stalled``. Readers, codec and profile go to the gateway's view only: they change too often
for the state bucket and the events stream. An unreachable MediaMTX changes no state; it is
logged once per outage and shown in /readyz and in every stream's JSON. With several MediaMTX
nodes each stream is judged by the node its record names; a node that does not answer leaves
its streams as they are, and the gateway stays ready while one node answers. Edges (nodes that
pull from an origin) judge no stream: their readers are added to the stream's, less their own
pull from the origin, and every node's total goes to the view for the gateway to spread viewers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import nats.errors

from framecast.proto.errors import BusError
from framecast.proto.states import IllegalTransition, StreamState
from framecast.proto.store import StateStore
from framecast.runtime.mediamtx_api import MediaMTXClient, MediaMTXError

from .events import StateView
from .mediamtx import PathHealth, path_health

__all__ = ["Reconciler"]

log = logging.getLogger("framecast.gateway.reconciler")

S = StreamState


class Reconciler:
    """Polls every MediaMTX node every ``interval_s`` and reconciles stream states with what
    each serves. ``clients`` maps node names to control-API clients; the first is the node of
    records that name none (a deployment with one node)."""

    def __init__(self, clients: Mapping[str, MediaMTXClient], store: StateStore, view: StateView, *,
                 interval_s: float = 1.0, edges: Mapping[str, str] | None = None) -> None:
        self.clients = dict(clients)
        self.edges = dict(edges or {})
        """Edge node name → the origin it pulls from."""
        self.default_node = next(name for name in self.clients if name not in self.edges)
        self.store = store
        self.view = view
        self.interval_s = interval_s
        self._outage: dict[str, type[MediaMTXError]] = {}
        self._problems: dict[str, str] = {}

    async def run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.interval_s)

    async def poll(self) -> None:
        """One round: read every node's paths, then move the streams they confirm or contradict."""
        answers = await asyncio.gather(*(self._paths(name, client) for name, client in self.clients.items()))
        served = {name: paths for name, paths in zip(self.clients, answers, strict=True) if paths is not None}
        down = [name for name in self.clients if name not in served]
        if not served:
            self.view.paths = {}
            self.view.set_mediamtx("unreachable", self._problem(down))
            return
        self.view.set_mediamtx("ok", self._problem(down) if down else "")
        self.view.node_readers = {name: sum(h.readers for h in node_paths.values())
                                  for name, node_paths in served.items()}
        paths: dict[str, PathHealth] = {}
        for name, node_paths in served.items():
            if name not in self.edges:
                paths.update(node_paths)
        for stream_id, record in list(self.view.records.items()):
            node = record.mediamtx_node or self.default_node
            if node in served:  # a node that did not answer leaves its streams as they are
                health = served[node].get(stream_id)
                if health is not None:
                    paths[stream_id] = self._with_edge_readers(stream_id, node, health, served)
                await self._reconcile(stream_id, record.state, health)
        self.view.paths = paths

    def _with_edge_readers(self, stream_id: str, origin: str, health: PathHealth,
                           served: Mapping[str, Mapping[str, PathHealth]]) -> PathHealth:
        """``health`` with the stream's viewers on ``origin``'s edges, whose pulls are not viewers."""
        readers = health.readers
        for edge, of in self.edges.items():
            pulled = served.get(edge, {}).get(stream_id) if of == origin else None
            if pulled is not None:
                readers += pulled.readers - (1 if pulled.live else 0)
        return health._replace(readers=max(readers, 0))

    async def _paths(self, node: str, client: MediaMTXClient) -> dict[str, PathHealth] | None:
        """``node``'s paths by name, or None (logged once per outage) when its API does not answer."""
        try:
            paths = await client.list_paths()
        except MediaMTXError as exc:
            if self._outage.get(node) is not type(exc):
                log.warning("%s; stream states stay as they are until it answers", exc)
                self._outage[node] = type(exc)
            self._problems[node] = str(exc)
            return None
        if self._outage.pop(node, None) is not None:
            log.info("MediaMTX's control API at %s answers again", client.base_url)
        self._problems.pop(node, None)
        return {path.name: path_health(path) for path in paths}

    def _problem(self, down: list[str]) -> str:
        if len(self.clients) == 1:
            return self._problems.get(down[0], "") if down else ""
        return "; ".join(f"node {name}: {self._problems.get(name, 'no answer')}" for name in down)

    async def _reconcile(self, stream_id: str, state: StreamState, health: PathHealth | None) -> None:
        if state is S.PUBLISHING and health is not None and health.live and health.codec == "H264":
            readers = f"{health.readers} reader" + ("" if health.readers == 1 else "s")
            profile = health.profile or "profile not known yet"
            await self._move(stream_id, S.LIVE, f"MediaMTX is serving it (H264 {profile}, {readers})", S.PUBLISHING)
        elif state is S.LIVE and (health is None or not health.live):
            reason = ("MediaMTX no longer has the path" if health is None
                      else "MediaMTX has the path, but no source feeds it")
            await self._move(stream_id, S.STALLED, reason, S.LIVE)

    async def _move(self, stream_id: str, state: StreamState, reason: str, only_from: StreamState) -> None:
        try:
            await self.store.transition(stream_id, state, reason=reason, only_from=frozenset({only_from}))
        except IllegalTransition:
            log.debug("stream %s moved on before the reconciler could mark it %s", stream_id, state)
        except (TimeoutError, BusError, nats.errors.Error) as exc:
            log.warning("cannot mark stream %s %s: %s", stream_id, state, exc or type(exc).__name__)

"""Confirms from MediaMTX's control API that a stream is really served, and notices when it stops.

The encoder can only say that FFmpeg publishes; MediaMTX alone knows whether readers can get
the path, and with which codec and profile. Each poll moves a ``publishing`` stream that
MediaMTX serves as H264 to ``live``, and a ``live`` stream whose path is gone or unavailable to
``stalled``. Readers, codec and profile go to the gateway's view only: they change too often
for the state bucket and the events stream. An unreachable MediaMTX changes no state; it is
logged once per outage and shown in /readyz and in every stream's JSON.
"""

from __future__ import annotations

import asyncio
import logging

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
    """Polls MediaMTX every ``interval_s`` and reconciles stream states with what it serves."""

    def __init__(self, client: MediaMTXClient, store: StateStore, view: StateView, *,
                 interval_s: float = 1.0) -> None:
        self.client = client
        self.store = store
        self.view = view
        self.interval_s = interval_s
        self._outage: type[MediaMTXError] | None = None

    async def run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.interval_s)

    async def poll(self) -> None:
        """One round: read every MediaMTX path, then move the streams it confirms or contradicts."""
        try:
            paths = await self.client.list_paths()
        except MediaMTXError as exc:
            if type(exc) is not self._outage:
                log.warning("%s; stream states stay as they are until it answers", exc)
                self._outage = type(exc)
            self.view.paths = {}
            self.view.set_mediamtx("unreachable", str(exc))
            return
        if self._outage is not None:
            log.info("MediaMTX's control API answers again")
            self._outage = None
        self.view.set_mediamtx("ok")
        self.view.paths = {path.name: path_health(path) for path in paths}
        for stream_id, record in list(self.view.records.items()):
            await self._reconcile(stream_id, record.state, self.view.paths.get(stream_id))

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

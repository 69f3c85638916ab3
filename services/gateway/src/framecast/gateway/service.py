"""The gateway service: its lifespan wires NATS, the state view, the reconciler and the HTTP server.

uvicorn runs inside the lifespan on a socket bound first (so a busy address is one clear line,
not a traceback), with its own signal handling turned off: the framecast runtime owns SIGINT
and SIGTERM and leaves the lifespan, which stops the server, then the children, then NATS.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import StreamStats
from framecast.proto.store import StateStore
from framecast.runtime.http import http_server
from framecast.runtime.lease import ServiceTokens
from framecast.runtime.lifecycle import Runtime
from framecast.runtime.mediamtx_api import MediaMTXClient

from .app import create_app
from .events import StateView
from .reconciler import Reconciler
from .routes import Gateway
from .settings import GatewaySettings
from .viewers import Authenticator

__all__ = ["GatewayService", "lifespan"]

log = logging.getLogger("framecast.gateway")


@dataclass(frozen=True)
class GatewayService:
    """What the lifespan yields: the wiring, and the URL the HTTP server listens on."""

    gateway: Gateway
    reconciler: Reconciler
    url: str


@contextlib.asynccontextmanager
async def lifespan(runtime: Runtime[GatewaySettings]) -> AsyncIterator[GatewayService]:
    settings = runtime.settings
    if settings.gateway_auth == "none":
        log.warning("FRAMECAST_GATEWAY_AUTH=none: anyone who reaches %s may watch, start and stop "
                    "every stream; use this for tests only", settings.gateway_addr)
    bus = await Bus.connect(settings.nats_url, client_id=runtime.instance)
    static_token = settings.mediamtx_api_token
    tokens = (lambda: static_token) if static_token else ServiceTokens(bus, runtime.instance, settings.mediamtx_api)
    mediamtx = {node.name: MediaMTXClient(node.api, tokens) for node in settings.nodes()}
    http = httpx.AsyncClient(timeout=5.0)
    try:
        store = await StateStore.open(bus, runtime.instance)
        view = StateView()
        runtime.spawn(view.follow(store), "state-view")
        await bus.subscribe(subjects.STATS_ALL, StreamStats, view.on_stats)
        reconciler = Reconciler(mediamtx, store, view, interval_s=settings.mediamtx_poll_s,
                                edges={node.name: node.edge_of for node in settings.nodes() if node.edge_of})
        runtime.spawn(reconciler.run(), "reconciler")
        gateway = Gateway(bus=bus, store=store, view=view, settings=settings,
                          authenticator=Authenticator.from_settings(settings, http))
        async with http_server(create_app(gateway), settings.gateway_addr, variable="FRAMECAST_GATEWAY_ADDR",
                               before_stop=view.end_event_streams) as url:
            log.info("gateway listening on %s", url)
            yield GatewayService(gateway=gateway, reconciler=reconciler, url=url)
    finally:
        await runtime.cancel_children()
        for client in mediamtx.values():
            await client.aclose()
        await http.aclose()
        await bus.close()

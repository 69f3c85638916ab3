"""framecast gateway: what browsers and operators see (stream API, live events, player page)."""

from .app import create_app, problem_for
from .routes import Gateway
from .schemas import Playback, Readiness, StartRequest, StatsView, StreamView
from .service import GatewayService, lifespan
from .settings import GatewaySettings

__all__ = [
    "Gateway",
    "GatewayService",
    "GatewaySettings",
    "Playback",
    "Readiness",
    "StartRequest",
    "StatsView",
    "StreamView",
    "create_app",
    "lifespan",
    "problem_for",
]

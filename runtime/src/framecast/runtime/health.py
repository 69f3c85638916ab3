"""The health probes' one format, for every service: ``/healthz`` (the process answers), ``/readyz`` (it serves).

Bodies are JSON: 200 ``{"status": "ok"}``; 200 ``{"status": "ready"}``; 503
``{"status": "not ready", "detail": "<why>"}``. A service may add fields of its own by
subclassing ``Health`` (the gateway adds ``nats``, ``state`` and ``mediamtx``). ``probe`` answers
for the raw-socket server of capture and encoder (lifecycle.py); ``health_routes`` gives the
same two routes to a Litestar app (auth, gateway), Litestar being imported only there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import msgspec

__all__ = ["ALIVE", "HEALTHZ_PATH", "READYZ_PATH", "Health", "health_routes", "probe", "readiness", "status_code"]

HEALTHZ_PATH = "/healthz"
READYZ_PATH = "/readyz"


class Health(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A probe's body."""

    status: Literal["ok", "ready", "not ready"]
    detail: str = ""
    """Why the service is not ready (empty otherwise)."""


ALIVE = Health(status="ok")


def readiness(ready: bool, detail: str = "") -> Health:
    """``{"status": "ready"}``, or ``{"status": "not ready", "detail": detail}``."""
    return Health(status="ready") if ready else Health(status="not ready", detail=detail or "not ready yet")


def status_code(health: Health) -> int:
    return 503 if health.status == "not ready" else 200


def probe(path: str, check: Callable[[], Health]) -> tuple[int, bytes] | None:
    """The status and JSON body answering ``GET path``; ``None`` when ``path`` is no probe."""
    if path == HEALTHZ_PATH:
        health = ALIVE
    elif path == READYZ_PATH:
        health = check()
    else:
        return None
    return status_code(health), msgspec.json.encode(health)


def health_routes(
    check: Callable[[], Health], *, model: type[Health] = Health, ready_summary: str = "The service serves"
) -> list[Any]:
    """``GET /healthz`` and ``GET /readyz`` for a Litestar app; ``check()`` builds the readiness."""
    from litestar import Response, get  # noqa: PLC0415 - only the HTTP services depend on Litestar
    from litestar.openapi.datastructures import ResponseSpec  # noqa: PLC0415

    def healthz() -> Health:
        return ALIVE

    def readyz() -> Response[Health]:
        health = check()
        return Response(health, status_code=status_code(health))

    readyz.__annotations__["return"] = Response[model]  # type: ignore[valid-type] # the schema names the model
    healthz.__annotations__["return"] = Health
    not_ready = ResponseSpec(model, description="Not ready; `detail` says why.", generate_examples=False)
    return [
        get(HEALTHZ_PATH, summary="The process answers", tags=["health"], sync_to_thread=False)(healthz),
        get(READYZ_PATH, summary=ready_summary, tags=["health"], sync_to_thread=False,
            responses={503: not_ready})(readyz),
    ]

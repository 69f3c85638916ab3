"""The gateway's ASGI application: routes, the player's static files, OpenAPI, tracing, errors.

``create_app`` is the one factory (the service's lifespan and the tests both call it). Every
error leaves through ``problem_for``: the gateway's errors mapped here, the rest by
``framecast.runtime.problems``, as RFC 9457 problem documents whose ``detail`` tells the caller
what to do, never a stack trace or an internal exception's text.
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import Any

import nats.errors
from litestar import Litestar, Request
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.exceptions import SerializationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Receive, Scope, Send
from opentelemetry import trace
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE

from framecast.proto.errors import NoResponders, RequestRejected, RequestTimedOut
from framecast.runtime.health import health_routes
from framecast.runtime.problems import Answer, answer, exception_handler, problem_answer

from .routes import Gateway, api_router, readiness
from .schemas import Readiness
from .viewers import KeysUnavailable, NotAllowed, NotAuthenticated

__all__ = ["STATIC_DIR", "Answer", "create_app", "problem_for"]

log = logging.getLogger("framecast.gateway.app")

STATIC_DIR = Path(str(resources.files("framecast.gateway") / "static"))

MAX_BODY_BYTES = 64 * 1024
"""A start request is a few hundred bytes; nothing the API takes comes near this."""

#: What a ``Rejected`` code from a service means over HTTP.
REJECTED_STATUS = {
    "bad_request": 400,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "unavailable": 503,
    "internal": 502,
}


class JSONRequest(Request[Any, Any, Any]):
    """Litestar's request, whose JSON decoding turns every undecodable body into a 400.

    Litestar maps msgspec's ``DecodeError`` to a client error but lets ``UnicodeDecodeError``
    (a string that is not UTF-8) and ``RecursionError`` (nesting beyond msgspec's bound) escape
    as 500s; both are the caller's doing.
    """

    async def json(self) -> Any:
        try:
            return await super().json()
        except UnicodeDecodeError:
            raise SerializationException("the body is not valid JSON: it is not UTF-8") from None
        except RecursionError:
            raise SerializationException("the body is not valid JSON: it is nested too deeply") from None


def _gateway_answer(exc: Exception) -> Answer | None:
    """The gateway's own errors and those of the services it asks over NATS."""
    match exc:
        case NotAuthenticated():
            return answer(401, exc.detail, headers={"WWW-Authenticate": exc.challenge})
        case NotAllowed():
            return answer(403, str(exc))
        case KeysUnavailable():
            return answer(503, str(exc), headers={"Retry-After": "5"})
        case RequestRejected():
            return answer(REJECTED_STATUS.get(exc.code, 502), exc.message)
        case NoResponders() | RequestTimedOut():
            return answer(503, str(exc), headers={"Retry-After": "5"})
        case nats.errors.Error():
            return answer(503, "the gateway's connection to NATS is down; it reconnects on its own, "
                               "try again shortly", headers={"Retry-After": "5"})
    return None


def problem_for(exc: Exception) -> Answer:
    """The one place that decides what an exception means to an HTTP caller of the gateway."""
    return problem_answer(exc, _gateway_answer, service="gateway")


# ----- tracing -------------------------------------------------------------------------------------


def _span_details(scope: Scope) -> tuple[str, dict[str, Any]]:
    """Name the server span after the method only until routing knows the route."""
    return str(scope.get("method", scope["type"])), {}


def name_span_after_route(app: ASGIApp) -> ASGIApp:
    """Rename the request's span to its route template ("GET /api/streams/{stream_id}").

    OpenTelemetry's ASGI middleware runs before routing and only sees the raw path, which would
    give every stream id its own span name; Litestar's router leaves the template in the scope.
    """

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        template = scope.get("path_template")
        if scope["type"] == ScopeType.HTTP and template:
            span = trace.get_current_span()
            span.update_name(f"{scope.get('method', '')} {template}")
            span.set_attribute(HTTP_ROUTE, template)
        await app(scope, receive, send)

    return middleware


# ----- the application ------------------------------------------------------------------------------


def create_app(gateway: Gateway, *, static_dir: Path = STATIC_DIR) -> Litestar:
    """The gateway's ASGI app around ``gateway`` (its bus, state view and authenticator)."""
    static = [
        create_static_files_router(path="/static", directories=[static_dir], include_in_schema=False,
                                   name="static"),
        create_static_files_router(path="/", directories=[static_dir], html_mode=True,
                                   include_in_schema=False, name="player"),
    ]
    probes = health_routes(lambda: readiness(gateway), model=Readiness,
                           ready_summary="NATS connected and the stream states loaded")
    return Litestar(
        route_handlers=[api_router(), *probes, *static],
        request_class=JSONRequest,
        dependencies={"gateway": Provide(lambda: gateway, use_cache=True, sync_to_thread=False)},
        exception_handlers={Exception: exception_handler(service="gateway", log=log, domain=_gateway_answer)},
        middleware=[name_span_after_route],
        plugins=[OpenTelemetryPlugin(OpenTelemetryConfig(
            scope_span_details_extractor=_span_details, exclude_spans=["receive", "send"],
        ))],
        openapi_config=OpenAPIConfig(
            title="framecast gateway",
            version="1",
            description="Streams, their state and live events; playback URLs with viewer tokens.",
            path="/schema",
            components=Components(security_schemes={
                "bearer": SecurityScheme(type="http", scheme="bearer",
                                         bearer_format="a JWT from the identity provider, or the API key"),
                "apiKey": SecurityScheme(type="apiKey", name="X-Api-Key", security_scheme_in="header"),
            }),
        ),
        request_max_body_size=MAX_BODY_BYTES,
        logging_config=None,
        debug=False,
    )

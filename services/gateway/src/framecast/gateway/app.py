"""The gateway's ASGI application: routes, the player's static files, OpenAPI, tracing, errors.

``create_app`` is the one factory (the service's lifespan and the tests both call it). Every
error leaves through ``problem_for``: one mapping from exceptions to RFC 9457 problem
documents whose ``detail`` tells the caller what to do, never a stack trace or an internal
exception's text.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import nats.errors
from litestar import Litestar, Request, Response
from litestar.di import Provide
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Receive, Scope, Send
from opentelemetry import trace
from opentelemetry.semconv.attributes.http_attributes import HTTP_ROUTE

from framecast.proto.errors import NoResponders, RequestRejected, RequestTimedOut

from .api import Gateway, Problem, api_router, health_routes
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


@dataclass(frozen=True)
class Answer:
    """A problem document, its headers and (for a bad request) the fields at fault."""

    problem: Problem
    headers: dict[str, str] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)


def _problem(status: int, detail: str, **kwargs: Any) -> Answer:
    return Answer(Problem(title=_title(status), status=status, detail=detail), **kwargs)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_for(exc: Exception) -> Answer:
    """The one place that decides what an exception means to an HTTP caller."""
    match exc:
        case NotAuthenticated():
            return _problem(401, exc.detail, headers={"WWW-Authenticate": exc.challenge})
        case NotAllowed():
            return _problem(403, str(exc))
        case KeysUnavailable():
            return _problem(503, str(exc), headers={"Retry-After": "5"})
        case RequestRejected():
            return _problem(REJECTED_STATUS.get(exc.code, 502), exc.message)
        case NoResponders() | RequestTimedOut():
            return _problem(503, str(exc), headers={"Retry-After": "5"})
        case nats.errors.Error():
            return _problem(503, "the gateway's connection to NATS is down; it reconnects on its own, "
                                 "try again shortly", headers={"Retry-After": "5"})
        case ValidationException():
            errors = [_field_error(e) for e in exc.extra or () if isinstance(e, dict)]
            detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
            return _problem(400, detail or str(exc.detail), errors=errors)
        case HTTPException() if exc.status_code < 500:
            return _problem(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
    return _problem(500, "the gateway failed to handle this request; the details are in its log")


def _field_error(error: dict[str, Any]) -> dict[str, str]:
    """Litestar's ``{"key", "message", "source"}``, as the field the caller must fix and why."""
    key = str(error.get("key") or "")
    source = error.get("source") or ""
    where = str(getattr(source, "value", source))  # a ParamType member for parameters
    name = "" if key == "data" else key  # "data" is the whole body: the message names the field
    if name and where in ("path", "query", "header"):
        name = f"{name} (in the {where})"
    return {"field": name, "message": str(error.get("message", "invalid value"))}


def _on_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    answer = problem_for(exc)
    if answer.problem.status == 500:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    body: dict[str, Any] = msgspec.structs.asdict(answer.problem)
    if answer.errors:
        body["errors"] = answer.errors
    return Response(
        msgspec.json.encode(body),
        status_code=answer.problem.status,
        media_type="application/problem+json",
        headers=answer.headers,
    )


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
    return Litestar(
        route_handlers=[api_router(), *health_routes, *static],
        dependencies={"gateway": Provide(lambda: gateway, use_cache=True, sync_to_thread=False)},
        exception_handlers={Exception: _on_exception},
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

"""RFC 9457 problem documents: the one shape every framecast HTTP error leaves in, never a stack trace.

A service maps its own exceptions to an ``Answer`` (status, ``detail`` telling the caller what
to do, headers); Litestar's own errors (404, 405, 413, validation) are mapped here, and anything
else is a 500 whose details go to the service's log only. Litestar is imported only where a
response is built, so the raw-socket health server can use ``problem_body`` without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from litestar import Request, Response

__all__ = [
    "MEDIA_TYPE",
    "Answer",
    "DomainMapper",
    "Problem",
    "answer",
    "exception_handler",
    "problem_answer",
    "problem_body",
    "problem_response",
    "respond",
    "title",
]

MEDIA_TYPE = "application/problem+json"


class Problem(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem document (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""


@dataclass(frozen=True)
class Answer:
    """A problem document, its headers and (for a bad request) the fields at fault."""

    problem: Problem
    headers: dict[str, str] = field(default_factory=dict)
    errors: list[dict[str, str]] = field(default_factory=list)


DomainMapper = Callable[[Exception], Answer | None]
"""A service's own mapping: the ``Answer`` for the exceptions it knows, ``None`` for the rest."""


def title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def answer(status: int, detail: str = "", **kwargs: Any) -> Answer:
    return Answer(Problem(title=title(status), status=status, detail=detail), **kwargs)


def problem_body(problem: Answer) -> bytes:
    body: dict[str, Any] = msgspec.structs.asdict(problem.problem)
    if problem.errors:
        body["errors"] = problem.errors
    return msgspec.json.encode(body)


def respond(problem: Answer) -> Response[bytes]:
    """The Litestar response carrying ``problem``."""
    from litestar import Response  # noqa: PLC0415 - only the HTTP services depend on Litestar

    return Response(problem_body(problem), status_code=problem.problem.status, media_type=MEDIA_TYPE,
                    headers=problem.headers)


def problem_response(status: int, detail: str = "", headers: dict[str, str] | None = None) -> Response[bytes]:
    """A problem response built by a route itself (e.g. the auth hook's 400, 401, 415)."""
    return respond(answer(status, detail, headers=headers or {}))


def problem_answer(exc: Exception, domain: DomainMapper | None = None, *, service: str) -> Answer:
    """What ``exc`` means to an HTTP caller: the service's own mapping, then Litestar's, else a 500."""
    return (
        (domain(exc) if domain is not None else None)
        or _litestar_answer(exc)
        or answer(500, f"the {service} failed to handle this request; the details are in its log")
    )


def exception_handler(
    *, service: str, log: logging.Logger, domain: DomainMapper | None = None
) -> Callable[[Request[Any, Any, Any], Exception], Response[bytes]]:
    """The Litestar handler of ``Exception`` for an app: every error as a problem, 500s logged."""

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
        problem = problem_answer(exc, domain, service=service)
        if problem.problem.status == 500:
            log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return respond(problem)

    return handle


def _litestar_answer(exc: Exception) -> Answer | None:
    """Litestar's own client errors: validation (with the fields at fault), 404, 405, 413, ..."""
    from litestar.exceptions import HTTPException, ValidationException  # noqa: PLC0415

    match exc:
        case ValidationException():
            errors = [_field_error(e) for e in exc.extra or () if isinstance(e, dict)]
            detail = "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
            return answer(400, detail or str(exc.detail), errors=errors)
        case HTTPException() if exc.status_code < 500:
            return answer(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
    return None


def _field_error(error: dict[str, Any]) -> dict[str, str]:
    """Litestar's ``{"key", "message", "source"}``, as the field the caller must fix and why."""
    key = str(error.get("key") or "")
    source = error.get("source") or ""
    where = str(getattr(source, "value", source))  # a ParamType member for parameters
    name = "" if key == "data" else key  # "data" is the whole body: the message names the field
    if name and where in ("path", "query", "header"):
        name = f"{name} (in the {where})"
    return {"field": name, "message": str(error.get("message", "invalid value"))}

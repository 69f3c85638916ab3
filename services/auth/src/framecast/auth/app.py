"""The auth service's HTTP face: MediaMTX's auth hook, the JWKS, and the health probes.

Why: MediaMTX asks ``POST /mediamtx/auth`` about every access (any 2xx allows, anything else
denies) and, in ``authMethod: jwt``, fetches ``GET /.well-known/jwks.json``. The hook must
stay up and answer fast whatever it is sent: bad input is a 4xx, never a 5xx or a stack trace.
Every decision goes to the audit sink without the token, password or query string.

Wiring (NATS, revocation KV, audit publishing, the runner) stays outside: ``create_app``
takes the collaborators as plain callables, in the manner of litestar-fullstack's factory.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import HTTPException
from opentelemetry import metrics, trace
from opentelemetry.trace import SpanKind

from framecast.proto.messages import AuthDecision

from .hook import (
    Decision,
    HookRequest,
    HookRequestError,
    RevocationCheck,
    audit_record,
    decide,
    decode_request,
)
from .keys import Clock, KeyStore, KeyStoreError
from .ratelimit import FailureLimiter
from .tokens import TokenVerifier

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer("framecast.auth")
_decisions = metrics.get_meter("framecast.auth").create_counter(
    "framecast.auth.decisions", unit="{decision}",
    description="auth hook answers, by action, protocol, decision (allow, deny) and reason",
)

AuditSink = Callable[[AuthDecision], None]
"""``audit(decision)``: fire-and-forget (the NATS publisher queues it); must not block."""

HOOK_PATH = "/mediamtx/auth"
JWKS_PATH = "/.well-known/jwks.json"
DEFAULT_MAX_BODY_BYTES = 16 * 1024
"""A real hook body is a few hundred bytes plus the query string and user agent."""
DEFAULT_JWKS_MAX_AGE_S = 300
"""Far below the key store's publish-ahead margin, so HTTP caches never hide a next key."""


def create_app(
    keystore: KeyStore,
    verifier: TokenVerifier,
    is_revoked: RevocationCheck,
    audit: AuditSink,
    limiter: FailureLimiter | None,
    *,
    clock: Clock = time.time,
    ready: Callable[[], bool] = lambda: True,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    jwks_max_age_s: int = DEFAULT_JWKS_MAX_AGE_S,
) -> Litestar:
    """The ASGI app. ``ready()`` adds the caller's readiness (e.g. revocation mirror synced)."""

    @post(HOOK_PATH, status_code=200)
    async def mediamtx_auth(request: Request[Any, Any, Any]) -> Response[bytes]:
        if request.content_type[0] != "application/json":
            _decisions.add(1, {"decision": "deny", "reason": "bad_request"})
            return _problem(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "the hook expects application/json")
        try:
            hook_request = decode_request(await request.body())
        except HookRequestError as exc:
            _decisions.add(1, {"decision": "deny", "reason": "bad_request"})
            return _problem(HTTPStatus.BAD_REQUEST, exc.detail)
        # A span per decision (MediaMTX sends no trace context: each is a trace of its own),
        # with what was asked and the answer; never the token, password or query.
        with _tracer.start_as_current_span(f"POST {HOOK_PATH}", kind=SpanKind.SERVER) as span:
            try:
                decision = decide(hook_request, verifier, is_revoked, limiter)
            except Exception:
                logger.exception("auth decision failed; denying %r", hook_request)
                decision = Decision(False, "internal_error")
            outcome = "allow" if decision.allowed else "deny"
            if span.is_recording():
                span.set_attributes({
                    "http.request.method": "POST", "http.route": HOOK_PATH, "client.address": hook_request.ip,
                    "mediamtx.action": hook_request.action, "mediamtx.protocol": hook_request.protocol,
                    "mediamtx.path": hook_request.path, "framecast.auth.decision": outcome,
                    "framecast.auth.reason": decision.reason, "enduser.id": decision.subject or "",
                })
            _log(hook_request, decision)
            _decisions.add(1, {"action": hook_request.action, "protocol": hook_request.protocol,
                               "decision": outcome, "reason": decision.reason})
            _send(audit, audit_record(hook_request, decision, clock()))
        if decision.allowed:
            return Response(b"", status_code=HTTPStatus.OK, media_type="text/plain")
        return _problem(HTTPStatus.UNAUTHORIZED, decision.reason)

    @get(JWKS_PATH, sync_to_thread=False)
    def jwks() -> Response[bytes]:
        return Response(
            msgspec.json.encode(keystore.jwks()),
            media_type="application/json",
            headers={"Cache-Control": f"public, max-age={jwks_max_age_s}"},
        )

    @get("/healthz", sync_to_thread=False)
    def healthz() -> Response[bytes]:
        return Response(b'{"status":"ok"}', media_type="application/json")

    @get("/readyz", sync_to_thread=False)
    def readyz() -> Response[bytes]:
        try:
            keystore.signing_key()
        except KeyStoreError as exc:
            return _problem(HTTPStatus.SERVICE_UNAVAILABLE, exc.detail)
        if not ready():
            return _problem(HTTPStatus.SERVICE_UNAVAILABLE, "dependencies not ready")
        return Response(b'{"status":"ready"}', media_type="application/json")

    return Litestar(
        route_handlers=[mediamtx_auth, jwks, healthz, readyz],
        exception_handlers={Exception: _on_exception},
        request_max_body_size=max_body_bytes,
        openapi_config=None,
        logging_config=None,
        debug=False,
    )


def _problem(status: int, detail: str = "", headers: dict[str, str] | None = None) -> Response[bytes]:
    """An RFC 9457 problem document: a status, its title and a short detail, no internals."""
    problem: dict[str, object] = {"type": "about:blank", "title": _title(status), "status": status}
    if detail:
        problem["detail"] = detail
    return Response(
        msgspec.json.encode(problem),
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def _on_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Every error Litestar raises (404, 405, 413, …) or we did not expect, as a problem."""
    if isinstance(exc, HTTPException):
        return _problem(exc.status_code, headers=dict(exc.headers or {}))
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _problem(HTTPStatus.INTERNAL_SERVER_ERROR)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _log(request: HookRequest, decision: Decision) -> None:
    level = logging.INFO if not decision.allowed and decision.reason != "no_credentials" else logging.DEBUG
    logger.log(
        level,
        "%s %s %s/%s from %s: %s (%s)",
        "allow" if decision.allowed else "deny",
        request.action,
        request.protocol or "-",
        request.path or "-",
        request.ip,
        decision.reason,
        decision.subject or "anonymous",
    )


def _send(audit: AuditSink, record: AuthDecision) -> None:
    try:
        audit(record)
    except Exception as exc:
        logger.warning("audit sink failed (%s); the decision stands", type(exc).__name__)

"""The auth service's HTTP face: MediaMTX's auth hook, the JWKS, and the health probes.

Why: MediaMTX asks ``POST /mediamtx/auth`` about every access (any 2xx allows, anything else
denies) and, in ``authMethod: jwt``, fetches ``GET /.well-known/jwks.json``. The hook must
stay up and answer fast whatever it is sent: bad input is a 4xx, never a 5xx or a stack trace.
A wrong JWKS URL must not look like a key set either: MediaMTX caches any JSON object it gets
there as the JWKS, whatever the status (/work/shared/MEDIAMTX.md §2.4), so an unknown route or
method answers plain text, which its parser refuses (and so retries on the next request).
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
from litestar.exceptions import MethodNotAllowedException, NotFoundException
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from framecast.proto.messages import AuthDecision
from framecast.runtime import health
from framecast.runtime.health import Health
from framecast.runtime.problems import exception_handler, problem_response, title

from .hook import (
    Decision,
    HookRequest,
    HookRequestError,
    RelayCredential,
    RevocationCheck,
    audit_record,
    decide,
    decode_request,
)
from .keys import Clock, KeyStore, KeyStoreError
from .metrics import auth_instruments
from .ratelimit import FailureLimiter
from .tokens import TokenVerifier

logger = logging.getLogger(__name__)
_tracer = trace.get_tracer("framecast.auth")

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
    relay: RelayCredential | None = None,
) -> Litestar:
    """The ASGI app. ``ready()`` adds the caller's readiness (e.g. revocation mirror synced)."""

    @post(HOOK_PATH, status_code=200)
    async def mediamtx_auth(request: Request[Any, Any, Any]) -> Response[bytes]:
        if request.content_type[0] != "application/json":
            auth_instruments().decisions.add(1, {"decision": "deny", "reason": "bad_request"})
            return problem_response(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "the hook expects application/json")
        try:
            hook_request = decode_request(await request.body())
        except HookRequestError as exc:
            auth_instruments().decisions.add(1, {"decision": "deny", "reason": "bad_request"})
            return problem_response(HTTPStatus.BAD_REQUEST, exc.detail)
        # A span per decision (MediaMTX sends no trace context: each is a trace of its own),
        # with what was asked and the answer; never the token, password or query.
        with _tracer.start_as_current_span(f"POST {HOOK_PATH}", kind=SpanKind.SERVER) as span:
            try:
                decision = decide(hook_request, verifier, is_revoked, limiter, relay)
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
            auth_instruments().decisions.add(1, {"action": hook_request.action, "protocol": hook_request.protocol,
                               "decision": outcome, "reason": decision.reason})
            _send(audit, audit_record(hook_request, decision, clock()))
        if decision.allowed:
            return Response(b"", status_code=HTTPStatus.OK, media_type="text/plain")
        return problem_response(HTTPStatus.UNAUTHORIZED, decision.reason)

    @get(JWKS_PATH, sync_to_thread=False)
    def jwks() -> Response[bytes]:
        return Response(
            msgspec.json.encode(keystore.jwks()),
            media_type="application/json",
            headers={"Cache-Control": f"public, max-age={jwks_max_age_s}"},
        )

    def readiness() -> Health:
        try:
            keystore.signing_key()
        except KeyStoreError as exc:
            return health.readiness(False, exc.detail)
        return health.readiness(ready(), "dependencies not ready")

    return Litestar(
        route_handlers=[mediamtx_auth, jwks, *health.health_routes(readiness)],
        exception_handlers={
            Exception: exception_handler(service="auth service", log=logger),
            NotFoundException: _not_a_key_set,
            MethodNotAllowedException: _not_a_key_set,
        },
        request_max_body_size=max_body_bytes,
        openapi_config=None,
        logging_config=None,
        debug=False,
    )


def _not_a_key_set(_request: Request[Any, Any, Any], exc: NotFoundException | MethodNotAllowedException) -> Response[bytes]:
    """404/405 as plain text: never JSON, which MediaMTX would cache as an (empty) key set."""
    body = f"{exc.status_code} {title(exc.status_code)}; the JWKS is at {JWKS_PATH}\n"
    return Response(body.encode(), status_code=exc.status_code, media_type="text/plain",
                    headers=dict(exc.headers or {}))


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

"""The MediaMTX HTTP auth hook: the request as MediaMTX sends it, and the access decision.

Why: with ``authMethod: http`` every publish, read, playback and control-API access is one
POST of this JSON (docs/mediamtx.md, "Auth hook"), and MediaMTX does not hand over the
credentials the way a JWT check wants them (same section):

- ``token`` is the Bearer token, else the *password*, else (RTSP/RTMP only) a ``token=`` or
  ``jwt=`` query parameter; so a JWT given as an RTSP password arrives in ``token`` too.
- For HLS and WebRTC a ``?token=`` never reaches ``token``: for those two protocols only we
  parse ``query`` ourselves, with MediaMTX's rule (``token`` if it appears exactly once, else
  ``jwt`` if exactly once). HLS session creation re-encodes the query with sorted keys; parsing
  does not care. ``api``, ``metrics``, ``pprof`` and ``playback`` (protocol empty) never take a
  token from the query: MediaMTX reads theirs from the ``Authorization`` header into ``token``.
- The first RTSP attempt carries no credentials at all. It must be denied: that denial is
  what makes MediaMTX send the 401 challenge after which the client sends its credentials.
- ``api``, ``metrics`` and ``pprof`` come with an empty path and are granted only by tokens
  whose permissions name them, which only ``TokenIssuer.issue_service`` writes.

The body must have the shape MediaMTX v1.20.1 (the pinned version) always sends: all ten keys,
each with its JSON type; anything else is a 400 naming the field. Older shapes are refused on
purpose: MediaMTX before v1.12.3 sent no ``token`` and before v1.19.0 no ``userAgent``, and a
hook that guessed at them would decide on credentials MediaMTX may have placed differently.
Keys added by a newer MediaMTX are ignored.

The decision never carries the token, password or query, and neither does ``repr()`` of
the request.

One credential is not a token: an edge MediaMTX pulls a stream from its origin as the user
``framecast-relay`` with the deployment's relay secret as password (``RelayCredential``), which
grants RTSP reads and nothing else. The edge itself checks its viewers' tokens through this
same hook, so the relay only carries what a token already allowed.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl

import msgspec

from framecast.proto.messages import AuthDecision

from .permissions import ACTIONS
from .ratelimit import FailureLimiter
from .tokens import TokenError, TokenErrorReason, TokenVerifier, VerifiedToken

DecisionReason = (
    Literal["ok", "no_credentials", "unknown_action", "rate_limited", "forbidden", "internal_error",
            "revocations_unknown", "bad_relay_secret"]
    | TokenErrorReason
)
RevocationCheck = Callable[[str], bool | None]
"""``is_revoked(jti)``: answered from an in-memory mirror, so it is cheap and synchronous;
``None`` while the mirror cannot be sure it holds every revocation (the hook then denies)."""

_UNSIGNED_REASONS: frozenset[str] = frozenset({"too_large", "malformed", "bad_algorithm", "unknown_kid"})
"""Refusals before any signature check (malformed claims after one are too rare to matter)."""
_AUDIT_FIELD_MAX = 512
_QUERY_FIELDS_MAX = 100


RELAY_USER = "framecast-relay"
"""The user an edge MediaMTX pulls from its origin as (``deploy/mediamtx/mediamtx-edge.yml``)."""
RELAY_SUBJECT = "relay"
RELAY_GOOD_FOR_S = 3600.0
"""How long the failure limiter lets a relay secret that worked through a blocked IP."""


@dataclass(frozen=True)
class RelayCredential:
    """The relay secret (FRAMECAST_AUTH_RELAY_SECRET); empty refuses every relay."""

    secret: str

    def __repr__(self) -> str:
        return "RelayCredential(<hidden>)"

    def judge(self, request: HookRequest) -> Decision:
        """An RTSP read of a stream by an edge that knows the secret; nothing else."""
        if not self.secret or not hmac.compare_digest(request.password.encode(), self.secret.encode()):
            return Decision(False, "bad_relay_secret", RELAY_SUBJECT)
        if request.action != "read" or request.protocol != "rtsp" or not request.path:
            return Decision(False, "forbidden", RELAY_SUBJECT)
        return Decision(True, "ok", RELAY_SUBJECT)


class HookRequestError(ValueError):
    """The body is not a MediaMTX hook request; ``detail`` names the field, never its value."""

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class HookRequest(msgspec.Struct, frozen=True, kw_only=True, rename={"user_agent": "userAgent"}):
    """The JSON MediaMTX v1.20.1 posts (docs/mediamtx.md, "Auth hook"): every key is required,
    ``id`` may be ``null``. Unknown keys are ignored."""

    ip: str
    user: str
    password: str
    token: str
    action: str
    path: str
    protocol: str
    id: str | None
    query: str
    user_agent: str

    def __repr__(self) -> str:
        return (
            f"HookRequest(ip={self.ip!r}, action={self.action!r}, path={self.path!r}, "
            f"protocol={self.protocol!r}, id={self.id!r}, user={self.user!r}, "
            f"credentials={'yes' if self.password or self.token or self.query else 'no'})"
        )


class Decision(msgspec.Struct, frozen=True):
    """An answer of the hook: ``subject`` and ``jti`` are set once a token was verified."""

    allowed: bool
    reason: DecisionReason
    subject: str = ""
    jti: str = ""


_decoder = msgspec.json.Decoder(HookRequest)


def decode_request(body: bytes) -> HookRequest:
    """Parse a hook body; raises ``HookRequestError`` for anything MediaMTX would not send."""
    try:
        return _decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise HookRequestError(f"invalid hook request: {exc}") from None
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise HookRequestError("body is not JSON") from None
    except RecursionError:  # msgspec's bound on nesting; MediaMTX's body is one flat object
        raise HookRequestError("body is nested too deeply") from None


QUERY_TOKEN_PROTOCOLS: frozenset[str] = frozenset({"hls", "webrtc"})
"""Where MediaMTX leaves a ``?token=`` in ``query`` for the hook to find (RTSP and RTMP move it into ``token``)."""


def extract_token(request: HookRequest) -> str:
    """The credential to verify: ``token`` (MediaMTX's Bearer, password or RTSP/RTMP query
    token), else for HLS and WebRTC the query's ``token``/``jwt``. Empty when there is none."""
    if request.token:
        return request.token
    return query_token(request.query) if request.protocol in QUERY_TOKEN_PROTOCOLS else ""


def query_token(query: str) -> str:
    """``token`` if it appears exactly once, else ``jwt`` if it does; else empty (MediaMTX's rule)."""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, max_num_fields=_QUERY_FIELDS_MAX)
    except ValueError:
        return ""
    for name in ("token", "jwt"):
        values = [value for key, value in pairs if key == name]
        if len(values) == 1:
            return values[0]
    return ""


def decide(
    request: HookRequest,
    verifier: TokenVerifier,
    is_revoked: RevocationCheck,
    limiter: FailureLimiter | None = None,
    relay: RelayCredential | None = None,
) -> Decision:
    """Allow only a valid, unrevoked token whose permissions cover this action and path, or an
    edge's relay read (``relay``).

    Failures other than a missing credential (the normal first RTSP attempt) and an unknown
    action (MediaMTX's doing, not the client's) count against the client's IP. A blocked IP's
    tokens are verified only as the limiter admits them; a token it knows to be good always is.
    """
    if request.action not in ACTIONS:
        return Decision(False, "unknown_action")
    token = extract_token(request)
    if not token:
        return Decision(False, "no_credentials")
    if limiter is not None and not limiter.admit(request.ip, token):
        return Decision(False, "rate_limited")
    if request.user == RELAY_USER:
        decision = (relay or RelayCredential("")).judge(request)
        if limiter is not None:
            if decision.allowed:
                limiter.record_success(token, RELAY_GOOD_FOR_S)
            else:  # a guess at a secret, like a forged signature: it spends the probe allowance
                limiter.record_failure(request.ip)
        return decision
    decision, verified = _judge(request, token, verifier, is_revoked)
    if limiter is not None:
        if verified is not None:
            limiter.record_success(token, verified.expires_at - verifier.clock())
        if not decision.allowed:
            limiter.record_failure(request.ip, checked_signature=decision.reason not in _UNSIGNED_REASONS)
    return decision


def audit_record(request: HookRequest, decision: Decision, at: float) -> AuthDecision:
    """The audit event for one decision: who, what, where and why; never a credential."""
    return AuthDecision(
        at=at,
        action=request.action[:_AUDIT_FIELD_MAX],
        path=request.path[:_AUDIT_FIELD_MAX],
        protocol=request.protocol[:_AUDIT_FIELD_MAX],
        ip=request.ip[:_AUDIT_FIELD_MAX],
        allowed=decision.allowed,
        reason=decision.reason,
        subject=decision.subject,
        jti=decision.jti,
    )


def _judge(
    request: HookRequest, token: str, verifier: TokenVerifier, is_revoked: RevocationCheck
) -> tuple[Decision, VerifiedToken | None]:
    try:
        verified = verifier.verify(token)
    except TokenError as exc:
        return Decision(False, exc.reason), None
    revoked = is_revoked(verified.jti)
    if revoked is None:  # fail closed: a revocation may exist that this instance has not seen
        return Decision(False, "revocations_unknown", verified.subject, verified.jti), verified
    if revoked:
        return Decision(False, "revoked", verified.subject, verified.jti), verified
    if not verified.grants(request.action, request.path):
        return Decision(False, "forbidden", verified.subject, verified.jti), verified
    return Decision(True, "ok", verified.subject, verified.jti), verified

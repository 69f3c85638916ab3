"""Issuing and verifying the JWTs that grant MediaMTX access, with MediaMTX's own claim.

Why: one token format serves both auth modes. The claim ``mediamtx_permissions`` is what
MediaMTX reads in ``authMethod: jwt`` (docs/mediamtx.md, "JWT"), and the hook applies the
same permission rules (permissions.py), so a token means the same thing either way.

The verifier is stricter than MediaMTX where that costs our own tokens nothing: only ES256,
a known ``kid``, and ``exp``, ``sub`` and ``jti`` are required (MediaMTX accepts tokens
without ``exp``; ``jti`` is what revocation keys on); ``crit`` and ``b64`` headers are refused.
Times are judged exactly as MediaMTX judges them in ``authMethod: jwt`` (golang-jwt v5's
defaults, /work/shared/MEDIAMTX.md §2.4), so a token gets the same answer from the hook and
from MediaMTX itself: no leeway, ``exp`` and ``nbf`` cut to whole seconds, valid while
``nbf <= now < exp``, ``iat`` ignored.
"""

from __future__ import annotations

import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Literal, cast

import jwt
import msgspec
from jwt.utils import base64url_decode

from framecast.proto.ids import is_stream_id
from framecast.proto.messages import TokenIssued, TokenRequest

from .keys import ALGORITHM, Clock, KeyStore
from .permissions import SERVICE_ACTIONS, Action, Permission

TokenErrorReason = Literal[
    "too_large",
    "malformed",
    "bad_algorithm",
    "unknown_kid",
    "bad_signature",
    "missing_claim",
    "wrong_issuer",
    "wrong_audience",
    "expired",
    "not_yet_valid",
    "revoked",
]

VERIFIED_CACHE_SIZE = 4096
"""Tokens whose signature a verifier remembers (a few MB at most: tokens are size-capped)."""

DEFAULT_VIEWER_TTL_S = 300
DEFAULT_PUBLISHER_TTL_S = 300
"""MediaMTX checks a publish token only when the publish starts, and the encoder asks for a
fresh one at every FFmpeg (re)start, so it need not live longer than a viewer's."""
DEFAULT_SERVICE_TTL_S = 300
DEFAULT_MAX_TOKEN_BYTES = 2048
"""Our tokens are ~450-650 bytes; RTSP cannot carry more than ~1.9 KB anyway (docs/mediamtx.md, "RTSP")."""
NBF_BACKDATE_S = 60
"""``nbf`` is set this far in the past: MediaMTX validates it with zero leeway (docs/mediamtx.md, "JWT"),
so a verifier whose clock is up to a minute behind ours accepts a token at once."""

class TokenError(Exception):
    """A token was refused; ``reason`` is machine-readable, ``detail`` is for logs (no secrets)."""

    def __init__(self, reason: TokenErrorReason, detail: str = "") -> None:
        self.reason: TokenErrorReason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class TokenRequestError(ValueError):
    """A token cannot be issued as asked (bad stream id, ttl or action)."""


class VerifiedToken(msgspec.Struct, frozen=True, kw_only=True):
    """The claims of a token whose signature, issuer, audience and times were checked."""

    subject: str
    jti: str
    kid: str
    expires_at: float
    permissions: tuple[Permission, ...]

    def grants(self, action: str, path: str) -> bool:
        return any(p.matches(action, path) for p in self.permissions)


class _Header(msgspec.Struct, frozen=True):
    alg: str
    kid: str | None = None
    crit: msgspec.Raw | None = None
    b64: msgspec.Raw | None = None


class _Claims(msgspec.Struct, frozen=True):
    iss: str | None = None
    aud: str | list[str] | None = None
    sub: str = ""
    jti: str = ""
    exp: float | None = None
    nbf: float | None = None
    mediamtx_permissions: list[Permission] | str | None = None


_header_decoder = msgspec.json.Decoder(_Header)
_claims_decoder = msgspec.json.Decoder(_Claims)
_permissions_decoder = msgspec.json.Decoder(list[Permission])


class TokenIssuer:
    """Signs viewer, publisher and service tokens with the key store's current key."""

    def __init__(self, keystore: KeyStore, issuer: str, audience: str, clock: Clock = time.time) -> None:
        self.keystore = keystore
        self.issuer = issuer
        self.audience = audience
        self.clock = clock

    def issue_viewer(self, stream_id: str, subject: str, ttl: int = DEFAULT_VIEWER_TTL_S) -> TokenIssued:
        """Read (live) and playback (recordings) of one stream, nothing else."""
        path = _stream_path(stream_id)
        return self._issue(subject, ttl, (Permission("read", path), Permission("playback", path)))

    def issue_publisher(
        self, stream_id: str, subject: str, ttl: int = DEFAULT_PUBLISHER_TTL_S
    ) -> TokenIssued:
        """Publish to one stream, nothing else."""
        return self._issue(subject, ttl, (Permission("publish", _stream_path(stream_id)),))

    def issue_service(
        self, subject: str, actions: Iterable[str] = ("api", "metrics"), ttl: int = DEFAULT_SERVICE_TTL_S
    ) -> TokenIssued:
        """MediaMTX's control API, metrics and/or pprof (their path is always empty)."""
        wanted = tuple(dict.fromkeys(actions))
        if not wanted or not set(wanted) <= SERVICE_ACTIONS:
            raise TokenRequestError(f"service actions must be among {sorted(SERVICE_ACTIONS)}")
        return self._issue(subject, ttl, tuple(Permission(cast(Action, a)) for a in wanted))

    def issue_for(self, request: TokenRequest) -> TokenIssued:
        """Answer a ``TokenRequest`` from the bus (the role picks the kind of token)."""
        subject = request.subject or f"{request.role}:{request.stream_id or 'api'}"
        if request.role == "service":
            return self.issue_service(subject, ("api",), request.ttl_s or DEFAULT_SERVICE_TTL_S)
        if request.stream_id is None:
            raise TokenRequestError(f"a {request.role} token needs a stream_id")
        if request.role == "viewer":
            return self.issue_viewer(request.stream_id, subject, request.ttl_s or DEFAULT_VIEWER_TTL_S)
        return self.issue_publisher(request.stream_id, subject, request.ttl_s or DEFAULT_PUBLISHER_TTL_S)

    def _issue(self, subject: str, ttl: int, permissions: tuple[Permission, ...]) -> TokenIssued:
        if not subject:
            raise TokenRequestError("a token needs a subject")
        if not 1 <= ttl <= self.keystore.max_token_ttl_s:
            raise TokenRequestError(f"ttl must be 1-{self.keystore.max_token_ttl_s:g} s, not {ttl}")
        clock_now = self.clock()
        key = self.keystore.signing_key(clock_now)
        now = int(clock_now)
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "nbf": now - NBF_BACKDATE_S,
            "exp": now + ttl,
            # hex: a jti is typed on command lines (`framecast token revoke JTI`), where a
            # base64url one starting with "-" would read as an option
            "jti": secrets.token_hex(8),
            "mediamtx_permissions": msgspec.to_builtins(permissions),
        }
        return TokenIssued(token=key.sign(claims), expires_at=float(now + ttl), kid=key.kid,
                           valid_for_s=now + ttl - clock_now)


class TokenVerifier:
    """Checks a token against the published keys; raises ``TokenError`` naming why not.

    ``leeway_s`` stays 0 for access decisions (MediaMTX has none); only revoking an expired
    token's sessions (revocation.py) widens it.
    """

    def __init__(
        self,
        keystore: KeyStore,
        issuer: str,
        audience: str,
        *,
        leeway_s: float = 0.0,
        max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES,
        clock: Clock = time.time,
    ) -> None:
        self.keystore = keystore
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.max_token_bytes = max_token_bytes
        self.clock = clock
        self._jws = jwt.PyJWS()
        self._verified: OrderedDict[str, tuple[_Claims, str, tuple[Permission, ...]]] = OrderedDict()

    def verify(self, token: str) -> VerifiedToken:
        """The token's subject, jti, expiry and permissions, or ``TokenError``.

        MediaMTX asks about one token up to three times per viewer join: a token whose
        signature was verified is remembered (the VERIFIED_CACHE_SIZE most recent), and asked
        again it pays only for the checks that can change: its key still published, its time
        window (revocation is the hook's own check, every time)."""
        if len(token) > self.max_token_bytes:
            raise TokenError("too_large", f"{len(token)} characters")
        now = self.clock()
        if (cached := self._verified.get(token)) is not None:
            claims, kid, permissions = cached
            if self.keystore.verification_key(kid, now) is not None:
                try:
                    expires_at = self._check(claims, now)
                except TokenError:
                    del self._verified[token]
                    raise
                self._verified.move_to_end(token)
                return VerifiedToken(subject=claims.sub, jti=claims.jti, kid=kid, expires_at=expires_at,
                                     permissions=permissions)
            del self._verified[token]
        if not token.isascii():
            raise TokenError("malformed", "not ASCII")
        kid = self._header(token).kid
        key = self.keystore.verification_key(kid, now) if kid is not None else None
        if kid is None or key is None:
            raise TokenError("unknown_kid")
        try:
            payload = self._jws.decode_complete(token, key, algorithms=[ALGORITHM])["payload"]
        except jwt.InvalidSignatureError:
            raise TokenError("bad_signature") from None
        except jwt.PyJWTError as exc:
            raise TokenError("malformed", type(exc).__name__) from None
        try:
            claims = _claims_decoder.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise TokenError("malformed", str(exc)) from None
        expires_at = self._check(claims, now)
        permissions = _permissions(claims.mediamtx_permissions)
        self._verified[token] = (claims, kid, permissions)
        if len(self._verified) > VERIFIED_CACHE_SIZE:
            self._verified.popitem(last=False)
        return VerifiedToken(subject=claims.sub, jti=claims.jti, kid=kid, expires_at=expires_at,
                             permissions=permissions)

    def _header(self, token: str) -> _Header:
        try:
            encoded = token.split(".", 1)[0]
            header = _header_decoder.decode(base64url_decode(encoded))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise TokenError("malformed", f"header: {type(exc).__name__}") from None
        if header.alg != ALGORITHM:
            raise TokenError("bad_algorithm", f"alg {header.alg[:16]!r}")
        if header.crit is not None or header.b64 is not None:
            raise TokenError("malformed", "crit/b64 headers are not accepted")
        return header

    def _check(self, claims: _Claims, now: float) -> float:
        """Everything but the permissions' content; returns ``exp``."""
        if claims.exp is None:
            raise TokenError("missing_claim", "exp")
        if claims.mediamtx_permissions is None:
            raise TokenError("missing_claim", "mediamtx_permissions")
        if not claims.sub or not claims.jti:
            raise TokenError("missing_claim", "jti" if claims.sub else "sub")
        if claims.iss != self.issuer:
            raise TokenError("wrong_issuer")
        audiences = [claims.aud] if isinstance(claims.aud, str) else claims.aud or []
        if self.audience not in audiences:
            raise TokenError("wrong_audience")
        exp = _numeric_date(claims.exp, "exp")
        if not now < exp + self.leeway_s:
            raise TokenError("expired")
        if claims.nbf is not None and now < _numeric_date(claims.nbf, "nbf") - self.leeway_s:
            raise TokenError("not_yet_valid")
        return exp


def _numeric_date(value: float, claim: str) -> float:
    """A JWT time as golang-jwt reads it: whole seconds (``TimePrecision``), finite."""
    if not math.isfinite(value):
        raise TokenError("malformed", f"{claim} is not a number of seconds")
    return float(math.floor(value))


def _permissions(claim: list[Permission] | str | None) -> tuple[Permission, ...]:
    """The claim as MediaMTX reads it: an array, or a string holding one (Keycloak style)."""
    if not isinstance(claim, str):
        return tuple(claim or ())
    try:
        return tuple(_permissions_decoder.decode(claim))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise TokenError("malformed", f"mediamtx_permissions: {exc}") from None


def _stream_path(stream_id: str) -> str:
    if not is_stream_id(stream_id):
        raise TokenRequestError(f"invalid stream id {stream_id[:80]!r}")
    return stream_id

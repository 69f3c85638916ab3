"""Who is calling the gateway, and which streams they may watch and control.

In production the caller brings a bearer JWT from the deployment's identity provider; it is
checked against the provider's JWKS (fetched with httpx, never with PyJWKClient's blocking
calls on the event loop, and cached) and its streams claim says which streams it covers. In
development one API key allows everything. Nothing else gets in: the gateway has no anonymous
mode unless FRAMECAST_GATEWAY_AUTH=none was set on purpose.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from .settings import GatewaySettings

__all__ = [
    "ALL_STREAMS",
    "Authenticator",
    "JwksCache",
    "JwtVerifier",
    "KeysUnavailable",
    "NotAllowed",
    "NotAuthenticated",
    "Viewer",
]

log = logging.getLogger("framecast.gateway.viewers")

ALL_STREAMS = "*"
#: Only public-key algorithms: a JWKS never holds a shared secret the gateway could verify with.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_S = 5.0
MIN_REFETCH_S = 10.0
"""A token naming an unknown key fetches the JWKS again (key rotation), at most this often."""


@dataclass(frozen=True, slots=True)
class Viewer:
    """An authenticated caller: ``subject`` names it in tokens and audit records."""

    subject: str
    streams: frozenset[str]
    """Stream ids this caller may watch and control; ``ALL_STREAMS`` in it allows every one."""

    def may_watch(self, stream_id: str) -> bool:
        return ALL_STREAMS in self.streams or stream_id in self.streams


class NotAuthenticated(Exception):
    """401: no credentials, or credentials that are not accepted; ``detail`` says which."""

    def __init__(self, detail: str, *, token_given: bool) -> None:
        self.detail = detail
        self.token_given = token_given
        super().__init__(detail)

    @property
    def challenge(self) -> str:
        """The WWW-Authenticate value (RFC 6750)."""
        return 'Bearer realm="framecast"' + (', error="invalid_token"' if self.token_given else "")


class NotAllowed(Exception):
    """403: the caller is known, but its identity does not cover this stream."""

    def __init__(self, viewer: Viewer, stream_id: str) -> None:
        self.viewer = viewer
        self.stream_id = stream_id
        super().__init__(
            f"{viewer.subject!r} may not use stream {stream_id!r}: it is not in the token's streams claim"
        )


class KeysUnavailable(Exception):
    """503: the identity provider's keys could not be fetched, so no token can be checked."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"the identity provider's keys at {url} cannot be fetched ({reason}); try again shortly"
        )


class JwksCache:
    """The identity provider's public keys by ``kid``, fetched asynchronously and kept ``ttl_s``.

    A fetch that fails keeps the keys already known (and is retried after ``MIN_REFETCH_S``);
    only a gateway that never got any keys answers ``KeysUnavailable``.
    """

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.ttl_s = ttl_s
        self._client = client
        self._clock = clock
        self._keys: dict[str, dict[str, Any]] | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, kid: str | None) -> dict[str, Any] | None:
        """The JWK of ``kid`` (the only key when ``kid`` is None), or None if the provider has none."""
        keys = await self._current(stale_after=self.ttl_s)
        key = _pick(keys, kid)
        if key is None:
            key = _pick(await self._current(stale_after=MIN_REFETCH_S), kid)
        return key

    async def _current(self, *, stale_after: float) -> dict[str, dict[str, Any]]:
        async with self._lock:
            if self._keys is None or self._clock() - self._fetched_at >= stale_after:
                await self._fetch()
            assert self._keys is not None
            return self._keys

    async def _fetch(self) -> None:
        self._fetched_at = self._clock()
        try:
            response = await self._client.get(self.url, headers={"Accept": "application/json"})
            response.raise_for_status()
            body = response.json()
            keys = body["keys"] if isinstance(body, dict) else None
            if not isinstance(keys, list):
                raise ValueError("the document has no 'keys' list")
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            reason = str(exc) or type(exc).__name__
            if self._keys is None:
                raise KeysUnavailable(self.url, reason) from None
            log.warning("cannot refresh the identity provider's keys from %s (%s); using the known ones",
                        self.url, reason)
            return
        self._keys = {
            str(key.get("kid", "")): key
            for key in keys
            if isinstance(key, dict) and key.get("kty") in ("RSA", "EC", "OKP") and key.get("use", "sig") == "sig"
        }


def _pick(keys: Mapping[str, dict[str, Any]], kid: str | None) -> dict[str, Any] | None:
    if kid is None:
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)


class JwtVerifier:
    """Checks a viewer's JWT: signature by a published key, issuer, audience, expiry."""

    def __init__(self, keys: JwksCache, *, issuer: str, audience: str, streams_claim: str) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.streams_claim = streams_claim

    async def verify(self, token: str) -> Viewer:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise _invalid("the bearer token is neither the API key nor a JWT") from None
        algorithm = header.get("alg")
        if algorithm not in ALGORITHMS:
            raise _invalid(f"tokens signed with {algorithm!r} are not accepted; use one of {', '.join(ALGORITHMS)}")
        kid = header.get("kid")
        data = await self.keys.get(kid if isinstance(kid, str) else None)
        if data is None:
            raise _invalid(f"the token's signing key (kid {kid!r}) is not published by the identity provider")
        if data.get("alg", algorithm) != algorithm:
            raise _invalid(f"the token says {algorithm} but its key (kid {kid!r}) is for {data['alg']}")
        try:
            key = jwt.PyJWK(data, algorithm=algorithm)
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise _invalid("the token has expired; sign in again") from None
        except jwt.InvalidAudienceError:
            raise _invalid(f"the token is not meant for this gateway (its audience is not {self.audience!r})") from None
        except jwt.InvalidIssuerError:
            raise _invalid(f"the token was not issued by {self.issuer!r}") from None
        except (jwt.PyJWKError, jwt.InvalidKeyError):
            raise _invalid(f"the token's key (kid {kid!r}) cannot check {algorithm} signatures") from None
        except jwt.InvalidTokenError as exc:
            raise _invalid(f"the token is not valid: {exc}") from None
        return Viewer(subject=str(claims.get("sub") or "unknown"), streams=self._streams(claims))

    def _streams(self, claims: Mapping[str, Any]) -> frozenset[str]:
        value = claims.get(self.streams_claim)
        if not isinstance(value, list):
            return frozenset()
        return frozenset(item for item in value if isinstance(item, str))


def _invalid(detail: str) -> NotAuthenticated:
    return NotAuthenticated(detail, token_given=True)


class Authenticator:
    """Turns a request's headers into a ``Viewer`` or raises ``NotAuthenticated``."""

    API_KEY_SUBJECT = "api-key"

    def __init__(self, *, api_key: str = "", jwt_verifier: JwtVerifier | None = None,
                 disabled: bool = False) -> None:
        self._api_key = api_key.encode()
        self._jwt = jwt_verifier
        self.disabled = disabled

    @classmethod
    def from_settings(cls, settings: GatewaySettings, http: httpx.AsyncClient) -> Authenticator:
        if settings.gateway_auth == "none":
            return cls(disabled=True)
        verifier = None
        if settings.gateway_jwks_url:
            verifier = JwtVerifier(
                JwksCache(settings.gateway_jwks_url, http, ttl_s=settings.gateway_jwks_cache_s),
                issuer=settings.gateway_issuer,
                audience=settings.gateway_audience,
                streams_claim=settings.gateway_streams_claim,
            )
        return cls(api_key=settings.gateway_api_key, jwt_verifier=verifier)

    async def authenticate(self, headers: Mapping[str, str]) -> Viewer:
        if self.disabled:
            return Viewer(subject="anonymous", streams=frozenset({ALL_STREAMS}))
        api_key = headers.get("x-api-key")
        if api_key is not None:
            if self._is_api_key(api_key):
                return self._key_viewer()
            raise NotAuthenticated("the X-Api-Key header holds no valid API key", token_given=True)
        scheme, _, token = headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise NotAuthenticated(
                "this API needs credentials: send 'Authorization: Bearer <token>'"
                + (" (or the API key)" if self._api_key else ""),
                token_given=False,
            )
        if self._is_api_key(token):
            return self._key_viewer()
        if self._jwt is None:
            raise NotAuthenticated("the API key was not accepted", token_given=True)
        return await self._jwt.verify(token)

    def _is_api_key(self, given: str) -> bool:
        return bool(self._api_key) and hmac.compare_digest(given.encode(), self._api_key)

    def _key_viewer(self) -> Viewer:
        return Viewer(subject=self.API_KEY_SUBJECT, streams=frozenset({ALL_STREAMS}))

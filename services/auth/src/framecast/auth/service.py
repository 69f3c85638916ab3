"""The auth service process: the hook and JWKS over HTTP, token issuance and audit over NATS.

The HTTP app (app.py) decides; this module connects it to the rest of framecast: tokens are
issued on ``framecast.auth.token.issue`` (queue group ``auth``, so instances share the load),
every hook decision is published on ``framecast.auth.audit``, and revoked token ids are
mirrored from a JetStream KV bucket so the hook checks them without a network round trip.
Each new revocation also ends the token's live sessions in MediaMTX (kick.py), which would
otherwise never notice it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from nats.aio.msg import Msg
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from opentelemetry import metrics

from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.errors import BusError
from framecast.proto.messages import AuthDecision, Rejected, TokenIssued, TokenRequest
from framecast.runtime.http import http_server
from framecast.runtime.lifecycle import Runtime
from framecast.runtime.mediamtx_api import MediaMTXClient as ControlAPI
from framecast.runtime.settings import Address, CommonSettings, Url

from .app import create_app
from .keys import KeyStore
from .kick import (
    CLAIM_PREFIX,
    Kicker,
    Revocation,
    claim_key,
    decode_revocation,
    encode_revocation,
)
from .ratelimit import FailureLimiter
from .tokens import TokenIssuer, TokenRequestError, TokenVerifier

log = logging.getLogger("framecast.auth")
_tokens = metrics.get_meter("framecast.auth").create_counter(
    "framecast.auth.tokens", unit="{token}", description="token requests over NATS, by role and outcome",
)

REVOKED_BUCKET = "framecast_revoked"
REVOKED_TTL_S = 86400 + 600
"""How long a revocation is kept: past the longest token lifetime the key store allows."""
MAINTAIN_EVERY_S = 300.0
KICK_TOKEN_TTL_S = 60
_JTI = re.compile(r"[A-Za-z0-9_=-]{1,256}")
"""jtis that are valid bucket keys and cannot collide with the ``kick.`` claims; ours are 12 of these."""


def default_key_dir() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "framecast", "keys")


class AuthSettings(CommonSettings, kw_only=True, frozen=True):
    auth_addr: Address = "127.0.0.1:8081"
    """Where the hook (POST /mediamtx/auth) and the JWKS (GET /.well-known/jwks.json) listen."""
    auth_key_dir: str = ""
    """Directory of the signing keys (0600 files); default ~/.local/state/framecast/keys."""
    auth_issuer: str = "framecast"
    """The ``iss`` of every token (MediaMTX's authJWTIssuer when it verifies them itself)."""
    auth_audience: str = "mediamtx"
    """The ``aud`` of every token (MediaMTX's authJWTAudience)."""
    mediamtx_api: Url = "http://127.0.0.1:9997"
    """MediaMTX's control API, where revoked tokens' live sessions are kicked (with a token we sign)."""


class RevocationError(ValueError):
    """A jti that cannot be revoked (not a valid key of the revocation bucket)."""

    def __init__(self, jti: str) -> None:
        self.jti = jti
        super().__init__(f"cannot revoke jti {jti[:80]!r}: expected 1-256 letters, digits, '_', '=' or '-'")


class Revocations:
    """An in-memory mirror of the revoked-jti bucket, kept current by a KV watch.

    ``on_revoked(jti, revision, revocation)`` is called for every revocation that may still
    have live sessions to end: each one put after the mirror synced, and, at start-up, each
    one no instance has claimed yet (put while no auth instance ran). Kick claims (keys under
    ``kick.``) share the bucket and are not revoked jtis.
    """

    def __init__(self, kv: KeyValue, on_revoked: Callable[[str, int, Revocation], None]) -> None:
        self.kv = kv
        self.on_revoked = on_revoked
        self.revoked: dict[str, float] = {}  # jti -> when its token expires anyway
        self.synced = asyncio.Event()

    def __contains__(self, jti: str) -> bool:
        return jti in self.revoked

    def prune(self, now: float | None = None) -> int:
        """Forget revocations of tokens that have expired by now (the bucket's entries age out
        without telling watchers, so the mirror must forget on its own); returns how many."""
        now = time.time() if now is None else now
        expired = [jti for jti, expires_at in self.revoked.items() if expires_at < now]
        for jti in expired:
            del self.revoked[jti]
        return len(expired)

    async def follow(self) -> None:
        # Synced once the bucket's newest entry at start has arrived. nats-py's own marker for
        # "initial values delivered" can come before the values under load, which would let the
        # hook answer before it knows every revocation.
        state = (await self.kv.status()).stream_info.state
        newest = state.last_seq if state.messages else 0
        watcher = await self.kv.watchall()
        loading: dict[str, tuple[int, Revocation | None]] = {}
        claims: set[str] = set()
        if newest == 0:
            self._synced(loading, claims)
        try:
            async for entry in watcher:
                if entry is None:
                    continue
                self._apply(entry, loading, claims)
                if not self.synced.is_set() and (entry.revision or 0) >= newest:
                    self._synced(loading, claims)
        finally:
            await watcher.stop()

    def _apply(self, entry: KeyValue.Entry, loading: dict[str, tuple[int, Revocation | None]],
               claims: set[str]) -> None:
        if entry.key.startswith(CLAIM_PREFIX):
            if not self.synced.is_set():
                claims.add(entry.key)
        elif entry.operation in (KV_DEL, KV_PURGE):
            self.revoked.pop(entry.key, None)
            loading.pop(entry.key, None)
        else:
            record = (entry.revision or 0, decode_revocation(entry.value))
            self.revoked[entry.key] = record[1].expires_at if record[1] else time.time() + REVOKED_TTL_S
            if self.synced.is_set():
                self._submit(entry.key, *record)
            else:
                loading[entry.key] = record

    def _synced(self, loading: dict[str, tuple[int, Revocation | None]], claims: set[str]) -> None:
        """The initial values are in: hand over those nobody claimed, then follow live."""
        for jti, (revision, revocation) in loading.items():
            if claim_key(jti, revision) not in claims:
                self._submit(jti, revision, revocation)
        loading.clear()
        claims.clear()
        self.synced.set()

    def _submit(self, jti: str, revision: int, revocation: Revocation | None) -> None:
        if revocation is None:
            log.warning("revoked token %s has no readable revocation record; its live sessions are not ended", jti)
        else:
            self.on_revoked(jti, revision, revocation)


async def revoked_bucket(bus: Bus) -> KeyValue:
    """The revocation bucket; entries expire after the longest token lifetime."""
    return await bus.js.create_key_value(bucket=REVOKED_BUCKET, history=1, ttl=REVOKED_TTL_S,
                                         description="framecast revoked token ids (jti)")


class AuthService:
    def __init__(self, runtime: Runtime[AuthSettings], bus: Bus, keystore: KeyStore) -> None:
        self.runtime = runtime
        self.bus = bus
        self.keystore = keystore
        settings = runtime.settings
        self.issuer = TokenIssuer(keystore, settings.auth_issuer, settings.auth_audience)
        self.verifier = TokenVerifier(keystore, settings.auth_issuer, settings.auth_audience)
        self._pending: set[asyncio.Task[None]] = set()

    async def on_issue(self, request: TokenRequest, _msg: Msg) -> TokenIssued | Rejected:
        try:
            issued = self.issuer.issue_for(request)
        except TokenRequestError as exc:
            _tokens.add(1, {"role": request.role, "outcome": "refused"})
            return Rejected(code="bad_request", message=str(exc))
        _tokens.add(1, {"role": request.role, "outcome": "issued"})
        log.info("issued a %s token for %s", request.role, request.stream_id or "the API",
                 extra={"stream_id": request.stream_id or "", "subject": request.subject, "kid": issued.kid})
        return issued

    def audit(self, decision: AuthDecision) -> None:
        """Publish a decision without making the hook wait for NATS."""
        task = asyncio.get_running_loop().create_task(self._publish_audit(decision))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish_audit(self, decision: AuthDecision) -> None:
        with contextlib.suppress(BusError, OSError):
            await self.bus.publish(subjects.AUTH_AUDIT, decision)

    async def maintain(self, revocations: Revocations) -> None:
        """Every few minutes: rotate and prune signing keys, forget expired revocations."""
        while True:
            if (new := await asyncio.to_thread(self.keystore.maintain)) is not None:
                log.info("rotated signing key: next key %s published", new.kid)
            revocations.prune()
            await asyncio.sleep(MAINTAIN_EVERY_S)


@contextlib.asynccontextmanager
async def lifespan(runtime: Runtime[AuthSettings]) -> AsyncIterator[AuthService]:
    settings = runtime.settings
    keystore = KeyStore(Path(settings.auth_key_dir or default_key_dir()))
    bus = await Bus.connect(settings.nats_url, client_id=runtime.instance)
    service = AuthService(runtime, bus, keystore)
    subject = f"auth-kicker:{runtime.instance}"
    api = ControlAPI(settings.mediamtx_api,
                     lambda: service.issuer.issue_service(subject, ("api",), KICK_TOKEN_TTL_S).token)
    try:
        kv = await revoked_bucket(bus)
        kicker = Kicker(kv, api, runtime.instance)
        revocations = Revocations(kv, kicker.submit)
        runtime.spawn(kicker.run(), "kicker")
        runtime.spawn(revocations.follow(), "revocations")
        runtime.spawn(service.maintain(revocations), "maintenance")
        await asyncio.wait_for(revocations.synced.wait(), 10)
        await bus.subscribe(subjects.AUTH_TOKEN_ISSUE, TokenRequest, service.on_issue, queue=subjects.AUTH_QUEUE)
        app = create_app(keystore, service.verifier, revocations.__contains__, service.audit, FailureLimiter(),
                         ready=lambda: bus.nc.is_connected)
        async with http_server(app, settings.auth_addr, variable="FRAMECAST_AUTH_ADDR") as url:
            log.info("auth hook on %s/mediamtx/auth, keys in %s", url, keystore.directory)
            yield service
    finally:
        await runtime.cancel_children()
        await api.aclose()
        await bus.close()


async def revoke(bus: Bus, jti: str, revocation: Revocation) -> int:
    """Deny token ``jti`` from now on and end its live sessions; returns the entry's revision.

    Every auth instance's hook checks the bucket's mirror, and one of them kicks the sessions
    ``revocation`` names. Revoking a jti again replaces its record and kicks again.
    """
    if not _JTI.fullmatch(jti):
        raise RevocationError(jti)
    kv = await revoked_bucket(bus)
    return await kv.put(jti, encode_revocation(revocation))

"""The auth service process: the hook and JWKS over HTTP, token issuance and audit over NATS.

The HTTP app (app.py) decides; this module connects it to the rest of framecast: tokens are
issued on ``framecast.auth.token.issue`` (queue group ``auth``, so instances share the load),
every hook decision is published on ``framecast.auth.audit``, the hook checks revocations
against the mirror of the revocation bucket (revocation.py), and each new revocation ends
the token's live sessions in MediaMTX (kick.py), which would otherwise never notice it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from nats.aio.msg import Msg

from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.errors import BusError
from framecast.proto.messages import AuthDecision, Rejected, TokenIssued, TokenRequest
from framecast.runtime.http import http_server
from framecast.runtime.lifecycle import Runtime
from framecast.runtime.mediamtx_api import MediaMTXClient

from .app import create_app
from .hook import RelayCredential
from .keys import KeyStore, KeyStoreError
from .kick import Kicker
from .metrics import auth_instruments
from .ratelimit import FailureLimiter
from .revocation import Revocations, revoked_bucket
from .settings import AuthSettings
from .tokens import TokenIssuer, TokenRequestError, TokenVerifier

log = logging.getLogger("framecast.auth")

MAINTAIN_EVERY_S = 300.0
KICK_TOKEN_TTL_S = 60


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
            auth_instruments().tokens.add(1, {"role": request.role, "outcome": "refused"})
            return Rejected(code="bad_request", message=str(exc))
        auth_instruments().tokens.add(1, {"role": request.role, "outcome": "issued"})
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
        """Every few minutes: rotate and prune signing keys, forget expired revocations.

        A key directory that cannot be written (a full disk) does not stop the service: the
        current key goes on signing, and the rotation is tried again next time."""
        failing = ""
        while True:
            try:
                if (new := await asyncio.to_thread(self.keystore.maintain)) is not None:
                    log.info("rotated signing key: next key %s published", new.kid)
            except KeyStoreError as exc:
                if str(exc) != failing:
                    log.warning("cannot maintain the signing keys (%s); the current key goes on signing, "
                                "retrying every %.0f s", exc, MAINTAIN_EVERY_S)
                failing = str(exc)
            else:
                if failing:
                    log.info("the key directory can be written again")
                failing = ""
            revocations.prune()
            await asyncio.sleep(MAINTAIN_EVERY_S)


@contextlib.asynccontextmanager
async def lifespan(runtime: Runtime[AuthSettings]) -> AsyncIterator[AuthService]:
    settings = runtime.settings
    keystore = KeyStore(Path(settings.key_dir()), rotate_every_s=settings.auth_rotate_every_s or None)
    bus = await Bus.connect(settings.nats_url, client_id=runtime.instance)
    service = AuthService(runtime, bus, keystore)
    subject = f"auth-kicker:{runtime.instance}"
    apis = [MediaMTXClient(node.api, lambda: service.issuer.issue_service(subject, ("api",), KICK_TOKEN_TTL_S).token)
            for node in settings.nodes() if node.api]
    try:
        kv = await revoked_bucket(bus)
        kicker = Kicker(kv, apis, runtime.instance)
        revocations = Revocations(kv, kicker.submit)
        bus.watch_connection(revocations.connection_lost, revocations.connection_back)
        runtime.spawn(kicker.run(), "kicker")
        runtime.spawn(revocations.follow(), "revocations")
        runtime.spawn(service.maintain(revocations), "maintenance")
        await asyncio.wait_for(revocations.synced.wait(), 10)
        await bus.subscribe(subjects.AUTH_TOKEN_ISSUE, TokenRequest, service.on_issue, queue=subjects.AUTH_QUEUE)
        app = create_app(keystore, service.verifier, revocations.is_revoked, service.audit, FailureLimiter(),
                         ready=lambda: bus.nc.is_connected, relay=RelayCredential(settings.auth_relay_secret))
        async with http_server(app, settings.auth_addr, variable="FRAMECAST_AUTH_ADDR") as url:
            log.info("auth hook on %s/mediamtx/auth, keys in %s", url, keystore.directory)
            yield service
    finally:
        await runtime.cancel_children()
        for api in apis:
            await api.aclose()
        await bus.close()


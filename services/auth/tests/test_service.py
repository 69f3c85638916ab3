"""The auth service on the bus: tokens issued by role over NATS, every decision audited on NATS."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from framecast.auth import AuthSettings, KeyStore, TokenVerifier, lifespan
from framecast.devstack.nats import NatsServer
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.errors import RequestRejected
from framecast.proto.messages import AuthDecision, TokenIssued, TokenRequest
from tests.support.services import running

from .test_revocation import _port, hook


@pytest.fixture
async def auth_url(nats_server: NatsServer, tmp_path: Path):  # type: ignore[no-untyped-def]
    port = _port()
    settings = AuthSettings(nats_url=nats_server.url, auth_addr=f"127.0.0.1:{port}", auth_key_dir=str(tmp_path))
    async with running("auth", settings, lifespan):
        yield f"http://127.0.0.1:{port}"


async def test_tokens_are_issued_by_role_with_the_narrowest_permissions(
    bus: Bus, auth_url: str, tmp_path: Path
) -> None:
    verifier = TokenVerifier(KeyStore(tmp_path), "framecast", "mediamtx")

    async def issue(request: TokenRequest) -> TokenIssued:
        return await bus.request(subjects.AUTH_TOKEN_ISSUE, request, TokenIssued, service="auth")

    viewer = verifier.verify((await issue(TokenRequest(role="viewer", stream_id="cam1", subject="alice"))).token)
    assert viewer.grants("read", "cam1") and not viewer.grants("read", "cam2")
    assert not viewer.grants("publish", "cam1") and not viewer.grants("api", "")
    assert viewer.subject == "alice" and viewer.expires_at - time.time() <= 300

    publisher = verifier.verify((await issue(TokenRequest(role="publisher", stream_id="cam1"))).token)
    assert publisher.grants("publish", "cam1") and not publisher.grants("read", "cam1")

    service = verifier.verify((await issue(TokenRequest(role="service", subject="gateway-1"))).token)
    assert service.grants("api", "") and not service.grants("read", "cam1")

    with pytest.raises(RequestRejected) as caught:
        await issue(TokenRequest(role="viewer"))
    assert caught.value.code == "bad_request" and "stream_id" in caught.value.message


async def test_every_hook_decision_is_audited_on_nats_without_the_token(bus: Bus, auth_url: str) -> None:
    decisions: asyncio.Queue[AuthDecision] = asyncio.Queue()

    async def on_audit(decision: AuthDecision, _msg: object) -> None:
        await decisions.put(decision)

    await bus.subscribe(subjects.AUTH_AUDIT, AuthDecision, on_audit)
    issued = await bus.request(subjects.AUTH_TOKEN_ISSUE, TokenRequest(role="viewer", stream_id="cam1"),
                               TokenIssued, service="auth")
    assert (await hook(auth_url, issued.token, "cam1"))[0] == 200
    assert (await hook(auth_url, issued.token, "cam2"))[0] == 401
    allowed = await asyncio.wait_for(decisions.get(), 5)
    denied = await asyncio.wait_for(decisions.get(), 5)
    assert (allowed.allowed, allowed.path, allowed.action, allowed.protocol) == (True, "cam1", "read", "webrtc")
    assert (denied.allowed, denied.path) == (False, "cam2") and denied.reason
    for decision in (allowed, denied):
        assert issued.token not in repr(decision) and issued.token.split(".")[2] not in repr(decision)

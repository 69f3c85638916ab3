"""Fixtures the gateway's test modules share; each module brings its own ``gateway``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from framecast.auth.keys import KeyStore
from framecast.auth.tokens import TokenIssuer
from framecast.gateway.service import GatewayService
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import TokenIssued, TokenRequest
from framecast.proto.store import StateStore


@pytest.fixture
async def client(gateway: GatewayService) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the module's ``gateway``, sending its API key."""
    key = gateway.gateway.settings.gateway_api_key
    async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {key}"},
                                 timeout=10) as http:
        yield http


@pytest.fixture
async def store(bus: Bus) -> StateStore:
    return await StateStore.open(bus, "test")


@pytest.fixture
async def token_issuer(bus: Bus, tmp_path: Path) -> AsyncIterator[tuple[TokenIssuer, list[TokenRequest]]]:
    """Answers token requests over NATS as the auth service does, with its real ``TokenIssuer``."""
    issuer = TokenIssuer(KeyStore(tmp_path / "keys"), "framecast-auth", "mediamtx")
    seen: list[TokenRequest] = []

    async def issue(request: TokenRequest, _msg: object) -> TokenIssued:
        seen.append(request)
        return issuer.issue_for(request)

    sub = await bus.subscribe(subjects.AUTH_TOKEN_ISSUE, TokenRequest, issue, queue=subjects.AUTH_QUEUE)
    yield issuer, seen
    await sub.unsubscribe()

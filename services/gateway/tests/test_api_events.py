"""``GET /api/events`` over real HTTP: live transitions and statistics, resuming with Last-Event-ID.

Transitions are written with the real ``StateStore`` into a real nats-server's JetStream; the
gateway runs through its service lifespan (uvicorn on a free port).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from framecast.devstack.nats import NatsServer
from framecast.gateway.service import GatewayService, lifespan
from framecast.gateway.settings import GatewaySettings
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import StreamStats
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from framecast.runtime.http import SHUTDOWN_GRACE_S
from framecast.runtime.lifecycle import Runtime

API_KEY = secrets.token_urlsafe(24)
KEEPALIVE_S = 0.3
S = StreamState


@pytest.fixture
async def gateway(nats_server: NatsServer, free_port: int) -> AsyncIterator[GatewayService]:
    settings = GatewaySettings(
        nats_url=nats_server.url, gateway_addr="127.0.0.1:0", gateway_api_key=API_KEY,
        gateway_keepalive_s=KEEPALIVE_S, mediamtx_api=f"http://127.0.0.1:{free_port}", mediamtx_poll_s=60,
    )
    async with lifespan(Runtime("gateway", settings, "gateway-events-test")) as service:
        yield service


class Events:
    """One open event stream, parsed as EventSource does (comments kept for the keep-alive test)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.comments: list[str] = []
        self._lines = response.aiter_lines()

    async def next(self, kind: str | None = None, timeout: float = 5.0) -> dict[str, Any]:
        """The next event (of ``kind``, skipping others): ``{"event", "id", "data"}``."""

        async def read() -> dict[str, Any]:
            event: dict[str, Any] = {"event": "message", "id": None, "data": []}
            async for line in self._lines:
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                elif line:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "data":
                        event["data"].append(value)
                    else:
                        event[name] = value
                elif event["data"]:
                    if kind is None or event["event"] == kind:
                        return event | {"data": json.loads("\n".join(event["data"]))}
                    event = {"event": "message", "id": None, "data": []}
            raise AssertionError("the event stream ended")

        return await asyncio.wait_for(read(), timeout)


@asynccontextmanager
async def follow(client: httpx.AsyncClient, stream: str | None = None,
                 last_event_id: str | None = None) -> AsyncIterator[Events]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    params = {"stream": stream} if stream else {}
    async with client.stream("GET", "/api/events", params=params, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Events(response)


async def test_transitions_arrive_live_and_a_reconnect_gets_exactly_the_missed_ones(
    client: httpx.AsyncClient, store: StateStore, stream_id: str
) -> None:
    async with follow(client, stream_id) as events:
        await store.transition(stream_id, S.REQUESTED, reason="asked")
        await store.transition(stream_id, S.STARTING)
        first, second = await events.next("transition"), await events.next("transition")
    assert [first["data"]["state"], second["data"]["state"]] == ["requested", "starting"]
    assert first["data"]["stream_id"] == stream_id and first["data"]["reason"] == "asked"
    assert int(second["id"]) > int(first["id"])

    await store.transition(stream_id, S.PUBLISHING)  # missed while disconnected
    await store.transition(stream_id, S.LIVE)
    async with follow(client, stream_id, last_event_id=second["id"]) as events:
        missed = [await events.next("transition"), await events.next("transition")]
        await store.transition(stream_id, S.STALLED)
        after = await events.next("transition")
    assert [e["data"]["state"] for e in missed] == ["publishing", "live"]
    assert after["data"]["state"] == "stalled"
    assert int(second["id"]) < int(missed[0]["id"]) < int(missed[1]["id"]) < int(after["id"])


async def test_without_last_event_id_only_new_events_come(
    client: httpx.AsyncClient, store: StateStore, stream_id: str
) -> None:
    await store.transition(stream_id, S.REQUESTED)
    async with follow(client, stream_id) as events:
        await store.transition(stream_id, S.STARTING)
        event = await events.next("transition")
    assert event["data"]["state"] == "starting"


async def test_all_streams_and_stats_without_an_id(
    client: httpx.AsyncClient, store: StateStore, bus: Bus, stream_id: str
) -> None:
    other = stream_id + "b"
    async with follow(client) as events:
        await store.transition(other, S.REQUESTED)
        assert (await events.next("transition"))["data"]["stream_id"] == other
        stats = StreamStats(stream_id=stream_id, encoder_id="enc", fps_out=25.0, dropped=2,
                            bitrate_kbps=640.0, at=time.time())
        await bus.publish(subjects.stats(stream_id), stats)
        event = await events.next("stats")
    assert event["id"] is None
    assert event["data"]["stream_id"] == stream_id
    assert (event["data"]["fps_out"], event["data"]["dropped"], event["data"]["bitrate_kbps"]) == (25.0, 2, 640.0)


async def test_filtered_stream_skips_other_streams(
    client: httpx.AsyncClient, store: StateStore, stream_id: str
) -> None:
    async with follow(client, stream_id) as events:
        await store.transition(stream_id + "x", S.REQUESTED)
        await store.transition(stream_id, S.REQUESTED)
        assert (await events.next("transition"))["data"]["stream_id"] == stream_id


async def test_idle_stream_sends_keep_alive_comments(client: httpx.AsyncClient, store: StateStore,
                                                     stream_id: str) -> None:
    async with follow(client, stream_id) as events:
        with pytest.raises(asyncio.TimeoutError):
            await events.next(timeout=KEEPALIVE_S * 3.5)
    assert events.comments.count("keep-alive") >= 2


async def test_disconnect_removes_the_jetstream_consumer(
    client: httpx.AsyncClient, bus: Bus, store: StateStore, stream_id: str
) -> None:
    deleted: set[str] = set()
    changed = asyncio.Event()

    async def on_advisory(msg: Any) -> None:
        deleted.add(json.loads(msg.data)["consumer"])
        changed.set()

    async def consumers() -> set[str]:
        return {info.name for info in await bus.js.consumers_info(subjects.EVENTS_STREAM)}

    advisory = f"$JS.EVENT.ADVISORY.CONSUMER.DELETED.{subjects.EVENTS_STREAM}.*"
    sub = await bus.nc.subscribe(advisory, cb=on_advisory)
    try:
        before = await consumers()
        async with follow(client, stream_id) as events:
            await store.transition(stream_id, S.REQUESTED)
            await events.next("transition")  # the consumer exists now
            ours = await consumers() - before
        assert len(ours) == 1, ours  # one consumer per event stream
        async with asyncio.timeout(10):
            while not ours <= deleted:
                changed.clear()
                await changed.wait()
        assert not ours & await consumers()
    finally:
        await sub.unsubscribe()


async def test_shutdown_ends_open_event_streams_at_once(
    nats_server: NatsServer, free_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    settings = GatewaySettings(nats_url=nats_server.url, gateway_addr="127.0.0.1:0", gateway_api_key=API_KEY,
                               mediamtx_api=f"http://127.0.0.1:{free_port}", mediamtx_poll_s=60)
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10) as http:
        async with lifespan(Runtime("gateway", settings, "gateway-shutdown-test")) as service:
            response = await http.send(http.build_request("GET", f"{service.url}/api/events"), stream=True)
            lines = response.aiter_lines()
            assert (await anext(lines)).startswith(":")  # connected
            stopping = loop.time()
        assert loop.time() - stopping < SHUTDOWN_GRACE_S
        assert [line async for line in lines if line] == []  # the stream ended cleanly
        await response.aclose()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

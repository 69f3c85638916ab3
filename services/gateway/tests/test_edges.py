"""A popular stream's viewers spread over its origin MediaMTX node and the edges that pull from
it, against stand-in control APIs (tests/test_edges_real.py does it with real MediaMTX nodes)."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator

import httpx
import pytest

from framecast.devstack.nats import NatsServer
from framecast.gateway.service import GatewayService, lifespan
from framecast.gateway.settings import GatewaySettings
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from framecast.runtime.lifecycle import Runtime
from tests.support.fake_mediamtx import FakeMediaMTX

EDGE_AFTER = 3


@pytest.fixture
async def nodes() -> AsyncIterator[dict[str, FakeMediaMTX]]:
    async with FakeMediaMTX() as origin, FakeMediaMTX() as edge1, FakeMediaMTX() as edge2:
        yield {"origin": origin, "edge1": edge1, "edge2": edge2}


@pytest.fixture
async def gateway(nats_server: NatsServer, nodes: dict[str, FakeMediaMTX]) -> AsyncIterator[GatewayService]:
    listed = [{"name": name, "api": fake.url, "whep": f"https://{name}.example/webrtc",
               "hls": f"https://{name}.example/hls", **({"edge_of": "origin"} if name != "origin" else {})}
              for name, fake in nodes.items()]
    settings = GatewaySettings(
        nats_url=nats_server.url, gateway_addr="127.0.0.1:0", gateway_api_key=secrets.token_urlsafe(24),
        mediamtx_nodes=json.dumps(listed), mediamtx_api_token="static-api-token", mediamtx_poll_s=60,
        gateway_edge_after=EDGE_AFTER,
    )
    async with lifespan(Runtime("gateway", settings, "gateway-test")) as service:
        view = service.gateway.view
        assert await view.wait_for(lambda: view.loaded, 10)
        yield service


async def polled(gateway: GatewayService) -> None:
    """The reconciler reads every node as it is now (its own polls are a minute apart here)."""
    await gateway.reconciler.poll()


async def published_on_origin(gateway: GatewayService, store: StateStore, stream_id: str) -> None:
    """A stream whose record names the origin node, as the gateway's view shows it."""
    view = gateway.gateway.view
    await store.transition(stream_id, StreamState.REQUESTED)
    await store.update(stream_id, mediamtx_node="origin")
    assert await view.wait_for(lambda: getattr(view.records.get(stream_id), "mediamtx_node", "") == "origin", 5)


async def node_for(client: httpx.AsyncClient, stream_id: str) -> str:
    response = await client.post(f"/api/streams/{stream_id}/playback")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["whep_url"] == f"https://{body['mediamtx_node']}.example/webrtc/{stream_id}/whep"
    return str(body["mediamtx_node"])


@pytest.mark.usefixtures("token_issuer")
async def test_viewers_spread_over_the_origin_and_its_edges_once_the_stream_is_popular(
    gateway: GatewayService, client: httpx.AsyncClient, store: StateStore, nodes: dict[str, FakeMediaMTX],
    stream_id: str,
) -> None:
    await published_on_origin(gateway, store, stream_id)
    origin = nodes["origin"]
    origin.add_path(stream_id)
    for _ in range(EDGE_AFTER - 1):
        origin.add_reader(stream_id)
    await polled(gateway)
    assert await node_for(client, stream_id) == "origin", "a quiet stream stays on its origin"

    origin.add_reader(stream_id)  # now EDGE_AFTER viewers on the origin
    await polled(gateway)
    burst = [await node_for(client, stream_id) for _ in range(7)]
    assert burst.count("edge1") == burst.count("edge2") == 3 and burst.count("origin") == 1, (
        f"a burst between two polls spreads: each edge takes viewers until it has as many as the origin ({burst})")

    await nodes["edge2"].__aexit__(None, None, None)  # an edge is lost
    await polled(gateway)
    assert "edge2" not in [await node_for(client, stream_id) for _ in range(6)], "no viewer is sent to a lost edge"


async def test_the_stream_counts_its_viewers_on_every_node_but_not_the_edges_pulls(
    gateway: GatewayService, client: httpx.AsyncClient, store: StateStore, nodes: dict[str, FakeMediaMTX],
    stream_id: str,
) -> None:
    await published_on_origin(gateway, store, stream_id)
    nodes["origin"].add_path(stream_id)
    for _ in range(3):  # two viewers and edge1's pull
        nodes["origin"].add_reader(stream_id)
    nodes["edge1"].add_path(stream_id, source_type="rtspSource")
    for _ in range(4):
        nodes["edge1"].add_reader(stream_id)
    await polled(gateway)
    stream = (await client.get(f"/api/streams/{stream_id}")).json()
    assert stream["readers"] == 6 and stream["mediamtx_node"] == "origin"

"""The one control-API client against a server speaking MediaMTX's API v3 shapes (tests.support)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from framecast.runtime.mediamtx_api import (
    MediaMTXBadResponse,
    MediaMTXClient,
    MediaMTXUnauthorized,
    MediaMTXUnavailable,
    PathNotFound,
)
from tests.support.fake_mediamtx import FakeMediaMTX

TOKEN = "service-token-for-api-action"


@pytest.fixture
async def mediamtx() -> AsyncIterator[FakeMediaMTX]:
    async with FakeMediaMTX(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def client(mediamtx: FakeMediaMTX) -> AsyncIterator[MediaMTXClient]:
    async with MediaMTXClient(mediamtx.url, lambda: TOKEN) as api:
        yield api


async def test_get_decodes_a_live_h264_path(mediamtx: FakeMediaMTX, client: MediaMTXClient) -> None:
    mediamtx.add_path("cam1", profile="Main", level="4", width=1280, height=720)
    mediamtx.add_reader("cam1", "webRTCSession")

    path = await client.get_path("cam1")

    assert path.name == "cam1"
    assert path.available and path.online
    assert path.source is not None and path.source.type == "rtspSession"
    assert path.tracks2[0].codec == "H264"
    assert path.tracks2[0].codecProps is not None
    assert (path.tracks2[0].codecProps.width, path.tracks2[0].codecProps.level) == (1280, "4")
    assert [r.type for r in path.readers] == ["webRTCSession"]


async def test_every_request_carries_a_fresh_bearer_token(mediamtx: FakeMediaMTX) -> None:
    issued = iter(["t1", "t2"])
    mediamtx.token = None
    async with MediaMTXClient(mediamtx.url, lambda: next(issued)) as api:
        await api.list_paths()
        await api.list_paths()
    assert mediamtx.authorizations == ["Bearer t1", "Bearer t2"]


async def test_an_async_token_source_is_awaited(mediamtx: FakeMediaMTX) -> None:
    async def issue() -> str:
        return TOKEN

    async with MediaMTXClient(mediamtx.url, issue) as api:
        assert await api.list_paths() == []


async def test_list_follows_every_page(mediamtx: FakeMediaMTX, client: MediaMTXClient) -> None:
    names = [f"cam{i:02d}" for i in range(7)]
    for name in reversed(names):
        mediamtx.add_path(name)

    page = await client.list_paths_page(page=1, items_per_page=3)
    everything = await client.list_paths(items_per_page=3)

    assert (page.itemCount, page.pageCount) == (7, 3)
    assert [p.name for p in page.items] == names[3:6]
    assert [p.name for p in everything] == names
    assert len(mediamtx.authorizations) == 1 + 3  # one page asked alone, then all three


async def test_an_empty_list_has_no_pages(client: MediaMTXClient) -> None:
    page = await client.list_paths_page()
    assert (page.itemCount, page.pageCount, page.items) == (0, 0, [])


async def test_no_token_is_challenged(mediamtx: FakeMediaMTX) -> None:
    async with MediaMTXClient(mediamtx.url) as api:
        with pytest.raises(MediaMTXUnauthorized) as caught:
            await api.list_paths()
    assert caught.value.challenged
    assert mediamtx.authorizations == [None]


async def test_a_wrong_token_is_rejected(mediamtx: FakeMediaMTX) -> None:
    async with MediaMTXClient(mediamtx.url, lambda: "forged") as api:
        with pytest.raises(MediaMTXUnauthorized) as caught:
            await api.get_path("cam1")
    assert not caught.value.challenged


async def test_an_absent_path_is_path_not_found(client: MediaMTXClient) -> None:
    with pytest.raises(PathNotFound) as caught:
        await client.get_path("nope")
    assert caught.value.name == "nope"


async def test_path_names_may_hold_slashes(mediamtx: FakeMediaMTX, client: MediaMTXClient) -> None:
    mediamtx.add_path("cams/lobby/1")
    assert (await client.get_path("cams/lobby/1")).name == "cams/lobby/1"


async def test_connection_refused_is_unavailable() -> None:
    with socket.socket() as sock:  # a port nobody listens on: bound, never listening
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with MediaMTXClient(url, lambda: TOKEN) as api:
            with pytest.raises(MediaMTXUnavailable) as caught:
                await api.list_paths()
    assert caught.value.url == f"{url}/v3/paths/list"
    assert "is MediaMTX running" in str(caught.value)


async def test_a_body_that_is_not_api_v3_is_a_bad_response() -> None:
    def not_mediamtx(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>some other server</html>")

    transport = httpx.MockTransport(not_mediamtx)
    async with MediaMTXClient("http://mediamtx.test", transport=transport) as api:
        with pytest.raises(MediaMTXBadResponse) as caught:
            await api.get_path("cam1")
    assert caught.value.status == 200


async def test_an_error_status_keeps_mediamtx_message(client: MediaMTXClient) -> None:
    with pytest.raises(MediaMTXBadResponse) as caught:
        await client.list_paths_page(items_per_page=0)
    assert (caught.value.status, caught.value.message) == (400, "invalid items per page")


async def test_kicking_the_publisher_ends_the_path(mediamtx: FakeMediaMTX) -> None:
    item = mediamtx.add_path("cam1", conf_name="cam1")
    async with httpx.AsyncClient(base_url=mediamtx.url) as http:
        kicked = await http.post(
            f"/v3/rtspsessions/kick/{item['source']['id']}",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        unknown = await http.post(
            "/v3/webrtcsessions/kick/00000000-0000-0000-0000-000000000000",
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert (kicked.status_code, kicked.json()) == (200, {"status": "ok"})
    assert (unknown.status_code, unknown.json()["error"]) == (404, "session not found")
    assert [kind for kind, _ in mediamtx.kicks] == ["rtspsessions", "webrtcsessions"]
    assert mediamtx.paths["cam1"]["available"] is False


async def test_session_lists_follow_every_page(mediamtx: FakeMediaMTX, client: MediaMTXClient) -> None:
    mediamtx.add_path("cam1")
    ids = {mediamtx.add_reader("cam1", "hlsSession") for _ in range(5)}

    sessions = await client.list_sessions("hlssessions", items_per_page=2)

    assert {s.id for s in sessions} == ids
    assert {(s.path, s.state) for s in sessions} == {("cam1", "")}, "HLS sessions carry no state"
    assert len(mediamtx.authorizations) == 3


async def test_a_session_list_of_a_server_that_is_off_is_empty() -> None:
    async with FakeMediaMTX(token=TOKEN, disabled=["srtconns"]) as mediamtx:
        async with MediaMTXClient(mediamtx.url, lambda: TOKEN) as api:
            assert await api.list_sessions("srtconns") == [], "a server that is off has no list route"


async def test_a_missing_paths_list_is_a_bad_response(mediamtx: FakeMediaMTX) -> None:
    def not_found(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="404 page not found")

    async with MediaMTXClient("http://mediamtx.test", transport=httpx.MockTransport(not_found)) as api:
        with pytest.raises(MediaMTXBadResponse) as caught:
            await api.list_paths()
    assert caught.value.status == 404, "no paths route is not the same as no paths"


async def test_kick_ends_a_session_and_says_when_it_had_gone(mediamtx: FakeMediaMTX, client: MediaMTXClient) -> None:
    mediamtx.add_path("cam1")
    reader = mediamtx.add_reader("cam1", "webRTCSession")

    assert await client.kick("webrtcsessions", reader)
    assert not await client.kick("webrtcsessions", reader), "a session already gone"
    assert not await client.kick("hlssessions", str(uuid.uuid4()))
    assert mediamtx.paths["cam1"]["readers"] == []
    assert all(header == f"Bearer {TOKEN}" for header in mediamtx.authorizations)


async def test_a_kick_with_a_rejected_token_is_unauthorized(mediamtx: FakeMediaMTX) -> None:
    async with MediaMTXClient(mediamtx.url, lambda: "wrong") as api:
        with pytest.raises(MediaMTXUnauthorized) as caught:
            await api.kick("webrtcsessions", str(uuid.uuid4()))
    assert caught.value.status == 401 and not caught.value.challenged


async def test_a_path_entry_is_added_once_and_deleted(mediamtx: FakeMediaMTX, client: MediaMTXClient) -> None:
    values = {"alwaysAvailable": True, "alwaysAvailableTracks": [{"codec": "H264"}]}
    assert await client.add_path_config("cam1", values) is True
    assert await client.add_path_config("cam1", {"maxReaders": 3}) is False, "an existing entry is left as it is"
    assert mediamtx.path_configs == {"cam1": values}
    assert await client.delete_path_config("cam1") is True
    assert await client.delete_path_config("cam1") is False, "already gone"

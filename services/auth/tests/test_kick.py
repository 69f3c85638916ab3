"""Which live sessions a revocation ends, and the control-API client that lists and kicks them."""

from __future__ import annotations

import uuid

import pytest

from framecast.auth import kick
from framecast.auth.kick import ControlAPI, MediaMTXRefused, Revocation, Session
from tests.support.fake_mediamtx import FakeMediaMTX


@pytest.mark.parametrize(
    ("session", "ended"),
    [
        (Session("r", "cam1", "read"), True),
        (Session("h", "cam1", ""), True),  # HLS sessions have no state
        (Session("i", "cam1", "idle"), True),  # PLAY is not re-authorised
        (Session("p", "cam1", "publish"), False),  # a viewer's revocation never drops the stream
        (Session("o", "cam2", "read"), False),
        (Session("n", "", "idle"), False),  # no path authorised yet
    ],
)
def test_which_sessions_a_viewer_revocation_ends(session: Session, ended: bool) -> None:
    assert Revocation(expires_at=0, paths=("cam1",)).ends(session) is ended


def test_permission_patterns_select_sessions_as_in_mediamtx() -> None:
    publisher = Revocation(expires_at=0, publish_paths=("~^cams/",))
    assert publisher.ends(Session("a", "cams/lobby", "publish"))
    assert publisher.ends(Session("b", "cams/lobby", "idle"))
    assert not publisher.ends(Session("c", "cams/lobby", "read"))
    assert not publisher.ends(Session("d", "other", "publish"))
    assert Revocation(expires_at=0, paths=("",)).ends(Session("e", "anything", "read"))


async def test_the_client_follows_pages_and_names_a_refusal(monkeypatch: pytest.MonkeyPatch, stream_id: str) -> None:
    monkeypatch.setattr(kick, "ITEMS_PER_PAGE", 2)
    async with FakeMediaMTX(token="secret", disabled=["srtconns"]) as mtx:
        mtx.add_path(stream_id)
        ids = {mtx.add_reader(stream_id, "hlsSession") for _ in range(5)}
        api = ControlAPI(mtx.url, lambda: "secret")
        try:
            assert {s.id for s in await api.sessions("hlssessions")} == ids
            assert await api.sessions("srtconns") == [], "a server that is off has no list route"
            assert not await api.kick("hlssessions", str(uuid.uuid4())), "a session already gone"
        finally:
            await api.aclose()
        api = ControlAPI(mtx.url, lambda: "wrong")
        try:
            with pytest.raises(MediaMTXRefused) as refused:
                await api.sessions("hlssessions")
        finally:
            await api.aclose()
    assert refused.value.status == 401

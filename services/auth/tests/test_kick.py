"""Which live sessions a revocation ends (the control-API client is tested in runtime/tests)."""

from __future__ import annotations

import pytest

from framecast.auth.revocation import Revocation
from framecast.runtime.mediamtx_api import Session


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

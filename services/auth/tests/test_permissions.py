"""MediaMTX's permission language: path patterns and actions, matched as MediaMTX matches them."""

from __future__ import annotations

import pytest

from framecast.auth import Permission, path_matches


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("", "cam1", True),
        ("", "cams/lobby/1", True),
        ("cam1", "cam1", True),
        ("cam1", "cam10", False),
        ("cam1", "xcam1", False),
        ("Cam1", "cam1", False),
        ("cams/lobby/1", "cams/lobby/1", True),
        ("~^cam", "cam1", True),
        ("~^cam", "xcam", False),
        ("~cam", "xcam", True),
        ("~cam", "mycamera/2", True),
        ("~^cam$", "cam1", False),
        ("~^cam$", "cam", True),
        ("~^cam[0-9]+$", "cam12", True),
        ("~^cams/.+/1$", "cams/lobby/1", True),
        ("~(?i)^CAM", "cam1", True),
        ("~\\d", "cam1", True),
        ("~(", "cam1", False),
        ("~^(?=cam)", "cam1", False),
        ("~(?<!x)cam", "cam1", False),
        ("~(c)\\1", "cc", False),
        ("~", "anything", True),
    ],
)
def test_path_patterns_match_like_mediamtx(pattern: str, path: str, expected: bool) -> None:
    assert path_matches(pattern, path) is expected


def test_actions_match_exactly() -> None:
    read = Permission("read", "cam1")
    assert read.matches("read", "cam1")
    assert not read.matches("playback", "cam1"), "read does not cover playback in MediaMTX"
    assert not read.matches("publish", "cam1")
    assert Permission("playback", "cam1").matches("playback", "cam1")
    assert Permission("api", "cam1").matches("api", ""), "the path of api/metrics/pprof is ignored"
    assert not Permission("api").matches("metrics", "")
    assert Permission("publish").matches("publish", "anything/at/all")

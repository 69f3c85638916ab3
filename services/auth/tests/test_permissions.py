"""MediaMTX's permission language: path patterns and actions, matched as MediaMTX matches them."""

from __future__ import annotations

import time

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
        # Go's RE2 syntax, which Python's re lacks or reads differently
        ("~^cam\\z", "cam", True),
        ("~\\pN", "cam1", True),
        ("~\\p{Lu}", "Cam", True),
        ("~^(?P<name>cam)$", "cam", True),
        ("~[[:digit:]]", "cam1", True),
        ("~\\d", "cam\u0661", False),
        # what Go's regexp rejects never matches
        ("~a*+", "aa", False),
        ("~\\C", "x", False),
        ("~\\\\C", "\\C", True),
        ("~a{1001}", "a" * 1001, False),
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


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("~^(a+)+$", "a" * 16_000 + "!"),
        ("~^(\\w+\\s?)*$", "a " * 8_000 + "!"),
        ("~(x+x+)+y", "x" * 16_000),
        ("~^(a|aa)*$", "a" * 16_000 + "b"),
        ("~^(a|b)*a(a|b){30}$", "ab" * 8_000 + "c"),
        ("~" + "(a*)*" * 200 + "b", "a" * 16_000),
    ],
)
def test_catastrophic_patterns_are_decided_in_bounded_time(pattern: str, path: str) -> None:
    """Backtracking would take ages on these; RE2 is linear in the path (a hook body is at most 16 KiB)."""
    started = time.perf_counter()
    assert not Permission("read", pattern).matches("read", path)
    assert time.perf_counter() - started < 0.5

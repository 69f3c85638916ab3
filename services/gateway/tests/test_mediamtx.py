"""What the gateway makes of a path MediaMTX reports: live or not, its video codec and profile."""

from __future__ import annotations

import msgspec
import pytest

from framecast.gateway.mediamtx import PathHealth, path_health
from framecast.runtime.mediamtx_api import Path
from tests.support.fake_mediamtx import path_item


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, PathHealth(live=True, codec="H264", profile="Baseline", readers=0)),
        ({"available": False}, PathHealth(live=False, codec="", profile="", readers=0)),
        # alwaysAvailable: the offline filler is readable but no real source feeds the path
        ({"online": False}, PathHealth(live=False, codec="H264", profile="Baseline", readers=0)),
        ({"profile": "High 4:4:4 Predictive"},
         PathHealth(live=True, codec="H264", profile="High 4:4:4 Predictive", readers=0)),
    ],
)
def test_path_health(fields: dict[str, object], expected: PathHealth) -> None:
    path = msgspec.convert(path_item("cam1", **fields), Path)
    assert path_health(path) == expected


def test_path_health_skips_audio_tracks() -> None:
    raw = path_item("cam1")
    raw["tracks2"].insert(0, {"codec": "Opus", "codecProps": {"channelCount": 2}})
    assert path_health(msgspec.convert(raw, Path)).codec == "H264"

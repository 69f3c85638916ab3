"""One stream-id rule and one source dispatch for every command line."""

from __future__ import annotations

import pytest

from framecast.proto.errors import FramecastError
from framecast.proto.ids import InvalidStreamId, check_stream_id, is_stream_id
from framecast.proto.messages import SOURCE_INPUTS, DeviceSource, FileSource, TestPatternSource, UrlSource, source_for


@pytest.mark.parametrize("text", ["cam1", "a", "A_b-9", "x" * 64])
def test_valid_stream_ids(text: str) -> None:
    assert is_stream_id(text) and check_stream_id(text) == text


@pytest.mark.parametrize("text", ["", "x" * 65, "cam.1", "cam 1", "cam/1", "cam*", "cam>"])
def test_invalid_stream_ids_are_a_bad_argument(text: str) -> None:
    assert not is_stream_id(text)
    with pytest.raises(InvalidStreamId) as caught:
        check_stream_id(text)
    assert isinstance(caught.value, FramecastError) and caught.value.exit_code == 2


def test_source_for_each_command_line_kind() -> None:
    assert source_for("testpattern") == TestPatternSource()
    assert source_for("file", "a.mp4", loop=False) == FileSource(path="a.mp4", loop=False)
    assert source_for("url", "rtsp://cam") == UrlSource(url="rtsp://cam")
    assert source_for("device", "/dev/video2") == DeviceSource(device="/dev/video2")
    assert set(SOURCE_INPUTS) == {"testpattern", "file", "url", "device"}
    with pytest.raises(ValueError, match="needs an input"):
        source_for("file")
    with pytest.raises(ValueError, match="unknown source"):
        source_for("sdk")

"""The test pattern's timestamp blocks: exact round trips, rejection of damage, and H.264."""

from __future__ import annotations

import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framecast.frames.pattern import (
    PIX_FMTS,
    Stamp,
    TestPattern,
    block_size,
    crc16,
    read_stamp,
    stamp,
)

SIZES = [(320, 180), (640, 360), (1280, 720), (1920, 1080)]
MS = 1_732_000_000_123
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


def test_crc_is_ccitt_false() -> None:
    assert crc16(b"123456789") == 0x29B1


@pytest.mark.parametrize(("width", "expected"), [(128, 4), (320, 8), (640, 16), (1920, 48)])
def test_block_size_follows_width(width: int, expected: int) -> None:
    assert block_size(width) == expected


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("pix_fmt", PIX_FMTS)
def test_render_round_trips(width: int, height: int, pix_fmt: str) -> None:
    pattern = TestPattern(width, height, pix_fmt)
    for frame_no in (0, 1, 2**48 - 1):
        frame = pattern.render(frame_no, MS + frame_no % 1000)
        assert read_stamp(frame) == Stamp(frame_no=frame_no, ms=MS + frame_no % 1000)


def test_render_reuses_one_buffer_and_moves() -> None:
    pattern = TestPattern(640, 360)
    first = pattern.render(1, MS)
    below_stamp = first[64:].copy()
    second = pattern.render(2, MS)
    assert second is first
    assert not np.array_equal(second[64:], below_stamp)


def test_yuv420p_y_plane_alone_reads() -> None:
    frame = TestPattern(640, 360, "yuv420p").render(5, MS)
    assert read_stamp(frame[:360]) == Stamp(5, MS)


@settings(max_examples=50, deadline=None)
@given(
    frame_no=st.integers(0, 2**48 - 1),
    ms=st.integers(0, 2**48 - 1),
    gray=st.booleans(),
)
def test_stamp_round_trips_any_value(frame_no: int, ms: int, gray: bool) -> None:
    frame = np.full((180, 320) if gray else (180, 320, 3), 90, np.uint8)
    stamp(frame, frame_no=frame_no, ms=ms)
    assert read_stamp(frame) == Stamp(frame_no, ms)


@pytest.mark.parametrize("value", [-1, 2**48])
def test_values_beyond_48_bits_are_refused(value: int) -> None:
    frame = np.zeros((360, 640), np.uint8)
    with pytest.raises(ValueError, match="48"):
        stamp(frame, frame_no=value, ms=MS)


def test_blank_frames_carry_no_stamp() -> None:
    assert read_stamp(np.zeros((360, 640, 3), np.uint8)) is None
    assert read_stamp(np.full((360, 640), 255, np.uint8)) is None


@pytest.mark.parametrize("word_row", [0, 2])
def test_a_flipped_block_is_rejected_not_misread(word_row: int) -> None:
    frame = TestPattern(640, 360).render(12345, MS)
    b = block_size(640)
    for column in range(32):
        damaged = frame.copy()
        block = damaged[word_row * b : (word_row + 1) * b, column * b : (column + 1) * b]
        block[...] = 251 - block  # 16 <-> 235: flips the bit
        assert read_stamp(damaged) is None


@pytest.mark.parametrize(
    ("width", "height"), [(127, 360), (64, 64), (640, 95), (1920, 287), (320, 47)]
)
def test_too_small_frames_are_refused(width: int, height: int) -> None:
    with pytest.raises(ValueError, match=rf"{width}x{height} frame is too small"):
        TestPattern(width, height)
    with pytest.raises(ValueError, match="too small"):
        stamp(np.zeros((height, width, 3), np.uint8), frame_no=1, ms=MS)
    with pytest.raises(ValueError, match="too small"):
        read_stamp(np.zeros((height, width), np.uint8))


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="pix_fmt 'nv12'"):
        TestPattern(640, 360, "nv12")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="HxWx3 or HxW uint8"):
        read_stamp(np.zeros((360, 640, 4), np.uint8))
    with pytest.raises(ValueError, match="HxWx3 or HxW uint8"):
        read_stamp(np.zeros((360, 640), np.float32))


def _ffmpeg(args: list[str], data: bytes) -> bytes:
    done = subprocess.run(
        [FFMPEG, "-hide_banner", "-loglevel", "error", *args],
        input=data,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def _h264(raw: bytes, width: int, height: int, pix_fmt: str) -> bytes:
    return _ffmpeg(
        ["-f", "rawvideo", "-pix_fmt", pix_fmt, "-s", f"{width}x{height}", "-r", "30", "-i", "-",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
         "-pix_fmt", "yuv420p", "-b:v", "500k", "-f", "h264", "-"],
        raw,
    )


def _decode(h264: bytes, pix_fmt: str) -> bytes:
    return _ffmpeg(["-f", "h264", "-i", "-", "-f", "rawvideo", "-pix_fmt", pix_fmt, "-"], h264)


@pytest.mark.parametrize(
    ("width", "height", "source_fmt"),
    [(640, 360, "bgr24"), (1280, 720, "bgr24"), (640, 360, "yuv420p")],
)
def test_stamps_survive_h264_at_500k(width: int, height: int, source_fmt: str) -> None:
    pattern = TestPattern(width, height, source_fmt)
    expected = [Stamp(n, MS + n * 33) for n in range(30)]
    raw = b"".join(pattern.render(s.frame_no, s.ms).tobytes() for s in expected)
    h264 = _h264(raw, width, height, source_fmt)
    shapes = {"bgr24": (height, width, 3), "gray": (height, width),
              "yuv420p": (height * 3 // 2, width)}
    for decoded_fmt, shape in shapes.items():
        frames = np.frombuffer(_decode(h264, decoded_fmt), np.uint8).reshape(-1, *shape)
        assert [read_stamp(frame) for frame in frames] == expected, decoded_fmt

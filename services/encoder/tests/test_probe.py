"""Choosing an encoder by trying it, with a fake FFmpeg whose hardware encoders fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from framecast.encoder.probe import (
    EncoderUnavailable,
    NoUsableEncoder,
    list_encoders,
    probe,
)
from framecast.proto.messages import VideoFormat
from tests.support.rtsp import RtspReceiver

CANDIDATES = ("h264_nvenc", "h264_qsv", "libx264")


def test_lists_the_build_encoders(ffmpeg_exe: str) -> None:
    listed = list_encoders(ffmpeg_exe)
    assert {"libx264", "h264_nvenc", "h264_qsv"} <= listed
    assert "aac" in listed  # audio encoders are listed too; only names matter


async def test_picks_libx264_when_hardware_fails(
    fake_ffmpeg: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="framecast.encoder.probe")
    result = await probe(fake_ffmpeg, candidates=CANDIDATES)
    assert result.chosen == "libx264"
    assert "OpenEncodeSessionEx failed: out of memory" in result.reasons["h264_nvenc"]
    assert "MFX session" in result.reasons["h264_qsv"]
    assert "libx264" not in result.reasons
    assert "encoder libx264 chosen" in caplog.text and "passed over h264_nvenc" in caplog.text


async def test_unlisted_candidates_are_skipped(fake_ffmpeg: str) -> None:
    result = await probe(fake_ffmpeg, candidates=("h264_videotoolbox", "libx264"))
    assert result.chosen == "libx264"
    assert result.reasons == {"h264_videotoolbox": "not in this FFmpeg build"}


async def test_forced_encoder_that_fails_is_an_error(fake_ffmpeg: str) -> None:
    with pytest.raises(EncoderUnavailable, match="OpenEncodeSessionEx") as caught:
        await probe(fake_ffmpeg, forced="h264_nvenc")
    assert caught.value.encoder == "h264_nvenc"


async def test_forced_encoder_that_works(fake_ffmpeg: str) -> None:
    result = await probe(fake_ffmpeg, forced="libx264")
    assert result.chosen == "libx264" and result.reasons == {}


async def test_hung_encoder_times_out(fake_ffmpeg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_FFMPEG_HANG", "1")
    with pytest.raises(NoUsableEncoder) as caught:
        await probe(fake_ffmpeg, candidates=("h264_qsv",), timeout=1.0)
    assert "did not finish within 1 s" in caught.value.reasons["h264_qsv"]


@pytest.mark.gpu
@pytest.mark.skipif(
    shutil.which("nvidia-smi") is None,
    reason="no NVIDIA GPU with NVENC here (nvidia-smi not found)",
)
async def test_nvenc_publishes(  # type: ignore[no-untyped-def]
    ffmpeg_exe: str, fmt: VideoFormat, tmp_path: Path, stream, producer, token_url
) -> None:
    result = await probe(ffmpeg_exe)
    assert result.chosen == "h264_nvenc", result.reasons
    rx = RtspReceiver(width=fmt.width, height=fmt.height, path="cam1", record_dir=tmp_path)
    async with rx:
        producer()
        supervisor, _, events = await stream(token_url(rx.url), encoder="h264_nvenc")
        await events.wait_for("publishing", timeout=15)
        await rx.wait_frames(30, timeout=10)
        assert supervisor.encoder == "h264_nvenc"
        assert not events.of("encoder_fallback")

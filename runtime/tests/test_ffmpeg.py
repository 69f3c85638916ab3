"""Finding FFmpeg and scrubbing secrets from what it says."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from framecast.runtime.ffmpeg import FFMPEG_ENV, FFmpegNotFound, find_ffmpeg, scrub


def test_finds_the_imageio_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FFMPEG_ENV, raising=False)
    assert os.access(find_ffmpeg(), os.X_OK)


def test_env_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    own = tmp_path / "ffmpeg"
    own.write_text("#!/bin/sh\n")
    own.chmod(0o755)
    monkeypatch.setenv(FFMPEG_ENV, str(own))
    assert find_ffmpeg() == str(own)


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FFMPEG_ENV, "/nonexistent/ffmpeg")
    with pytest.raises(FFmpegNotFound, match=FFMPEG_ENV) as caught:
        find_ffmpeg()
    assert "/nonexistent/ffmpeg" in caught.value.tried


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Error opening output rtsp://pub:hunter2@127.0.0.1:8554/cam1: Refused", "hunter2"),
        ("rtsp://eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln@10.0.0.1/cam1", "eyJhbGciOiJFUzI1NiJ9"),
        ("Could not open rtsp://h:8554/cam1?token=abc.def.ghi&x=1", "abc.def.ghi"),
        ("rtsp://h:8554/cam1?a=1&jwt=XYZ123 failed", "XYZ123"),
        ("Authorization: Bearer tok-123", "tok-123"),
        ("Proxy-Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("header sent: bearer tok-456", "tok-456"),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJhIjoxfQ.sig in a message", "eyJhbGciOiJIUzI1NiJ9"),
    ],
)
def test_scrub_removes_secrets(text: str, secret: str) -> None:
    cleaned = scrub(text)
    assert secret not in cleaned
    assert "***" in cleaned


def test_scrub_keeps_what_helps() -> None:
    line = "Error opening output rtsp://u:p@127.0.0.1:8554/cam1?token=t: Connection refused"
    expected = "Error opening output rtsp://***@127.0.0.1:8554/cam1?token=***: Connection refused"
    assert scrub(line) == expected
    assert scrub("frame=30 fps=29.97 speed=1.0x") == "frame=30 fps=29.97 speed=1.0x"

"""The low-latency table and the commands built from it."""

from __future__ import annotations

import pytest

from framecast.encoder.profiles import (
    PROFILES,
    UnknownEncoder,
    build_command,
    default_bitrate_kbps,
    is_runtime_failure,
)
from framecast.proto.messages import VideoFormat

URL = "rtsp://127.0.0.1:8554/cam1?token=t"


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


@pytest.mark.parametrize("encoder", sorted(PROFILES))
def test_every_encoder_is_browser_safe(encoder: str, fmt: VideoFormat) -> None:
    command = build_command("ffmpeg", encoder, fmt, URL)
    assert option(command, "-c:v") == encoder
    assert option(command, "-bf") == "0"
    assert option(command, "-profile:v") in ("baseline", "main")
    assert option(command, "-g") == option(command, "-keyint_min") == str(fmt.fps // 3)  # docs/performance.md
    assert option(command, "-bsf:v") == "dump_extra=freq=keyframe"
    assert option(command, "-fps_mode") == "cfr" and option(command, "-r") == str(fmt.fps)
    assert option(command, "-use_wallclock_as_timestamps") == "1"
    out = command[command.index("-i") + 2 :]
    pixels = option(out, "-vf") if "-vf" in out else option(out, "-pix_fmt")
    assert any(f in pixels for f in ("yuv420p", "nv12"))  # 4:2:0, never High 4:4:4
    assert command[-5:] == ["-f", "rtsp", "-rtsp_transport", "tcp", URL]
    # the input is described exactly: raw frames of the announced format on stdin
    i = command.index("-i")
    assert command[i + 1] == "pipe:0"
    assert option(command[:i], "-pix_fmt") == "bgr24"
    assert option(command, "-s") == "320x240"


def test_libx264_is_baseline_yuv420p(fmt: VideoFormat) -> None:
    command = build_command("ffmpeg", "libx264", fmt, URL)
    out = command[command.index("-i") + 2 :]
    assert option(out, "-pix_fmt") == "yuv420p"
    assert option(out, "-profile:v") == "baseline"
    assert option(out, "-preset") == "ultrafast" and option(out, "-tune") == "zerolatency"
    assert option(out, "-sc_threshold") == "0"
    assert option(out, "-threads") == "1"


def test_overrides(fmt: VideoFormat) -> None:
    command = build_command(
        "ffmpeg", "libx264", fmt, URL, gop=15, bitrate_kbps=300, threads=2,
        extra=("-metadata", "a=b"),
    )
    assert option(command, "-g") == "15"
    assert option(command, "-b:v") == option(command, "-maxrate") == option(command, "-bufsize") == "300k"
    assert option(command, "-qmin") == "20", "libx264: a still picture spends less than the bitrate"
    hardware = build_command("ffmpeg", "h264_nvenc", fmt, URL, bitrate_kbps=300)
    assert option(hardware, "-b:v") == option(hardware, "-maxrate") == "300k" and "-qmin" not in hardware
    assert option(command, "-threads") == "2"
    assert command[-7:-5] == ["-metadata", "a=b"]


def test_default_bitrate_grows_with_size_and_rate() -> None:
    small = default_bitrate_kbps(VideoFormat(width=320, height=240, fps=30))
    hd = default_bitrate_kbps(VideoFormat(width=1280, height=720, fps=30))
    hd60 = default_bitrate_kbps(VideoFormat(width=1280, height=720, fps=60))
    assert small < hd < hd60 == 2 * hd


def test_unknown_encoder(fmt: VideoFormat) -> None:
    with pytest.raises(UnknownEncoder, match="libopenh264"):
        build_command("ffmpeg", "libopenh264", fmt, URL)


def test_runtime_failures_are_recognised_for_hardware_only() -> None:
    nvenc = "h264_nvenc"
    assert is_runtime_failure(nvenc, "[h264_nvenc @ 0x1] OpenEncodeSessionEx failed: out of memory")
    assert is_runtime_failure(nvenc, "[h264_nvenc @ 0x1] Cannot load libcuda.so.1")
    # the server going away is not the GPU's fault, even in a line naming the encoder
    muxer_error = "[vost#0:0/h264_nvenc @ 0x1] Error submitting a packet to the muxer: Broken pipe"
    assert not is_runtime_failure(nvenc, muxer_error)
    assert not is_runtime_failure("libx264", "Error while opening encoder")

"""The one table of per-encoder low-latency settings, and the FFmpeg command built from it.

Every command framecast runs encodes browser-safe H.264 whatever the encoder: 4:2:0 chroma,
baseline or main profile, no B-frames, an IDR on the first frame and then every ``gop``
frames, SPS/PPS in band before every keyframe. The probe (probe.py) and the supervisor
(supervisor.py) build their commands here so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from framecast.proto.messages import VideoFormat

from .errors import EncoderError

SOFTWARE_ENCODER = "libx264"
VAAPI_DEVICE = "/dev/dri/renderD128"


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """How one FFmpeg encoder is driven for low latency."""

    encoder: str
    hardware: bool
    pix_fmt: str
    """The 4:2:0 frame format handed to the encoder (after any upload filter)."""
    h264_profile: str
    """Baseline or main, spelled as this encoder's ``-profile:v`` wants it."""
    codec_args: tuple[str, ...]
    """Low-latency settings; rate control and GOP are added by :func:`build_command`."""
    global_args: tuple[str, ...] = ()
    """Options that must come before ``-i`` (hardware device set-up)."""
    upload_filter: str = ""
    """A filter chain that converts and uploads frames to the device; empty for system memory."""
    runtime_errors: tuple[str, ...] = ()
    """Substrings of FFmpeg errors meaning "this hardware cannot encode here": fall back."""
    quality_floor: tuple[str, ...] = ()
    """A best quality the rate control does not go beyond (``-qmin``): a still picture then
    spends what that quality needs, not the whole bitrate. Empty: constant bitrate."""


# Why each setting is there:
# - no B-frames anywhere (-bf 0): WebRTC readers of MediaMTX are torn down on the first
#   frame whose PTS goes backwards, and B-frames add a reordering delay of their own.
# - libx264: ultrafast + zerolatency (no lookahead, no frame threads, sliced threads
#   instead), constrained baseline - the profile MediaMTX advertises over WebRTC (42e01f)
#   whatever the stream really is. ultrafast already drops CABAC, so baseline costs nothing.
#   -sc_threshold 0: no scene-cut keyframes, so keyframes fall exactly every GOP.
#   -qmin 20, a quality floor under the bitrate: a camera's picture is often still, and there
#   constant bitrate spends everything on detail nobody sees. On framecast's test pattern at
#   640x360 with a 1/3 s GOP: 385 instead of 826 kbit/s (49.7 vs 52.4 dB PSNR); on a busy
#   picture (testsrc2) nothing changes (834 kbit/s, 39.34 dB both). Capped CRF 23 was tried
#   and dropped: as thrifty on the still picture, but 2 dB worse on the busy one at the cap
#   (docs/performance.md, "The default GOP").
# - hardware encoders: main profile (supported by every hardware H.264 encoder, better
#   quality than baseline at the same bitrate), one frame in flight (-delay 0 /
#   -async_depth 1), no lookahead. Their I-frames are IDRs by default (NVENC idrPeriod =
#   gop; QSV/VAAPI idr_interval 0 = every I-frame), so -g alone gives the IDR cadence.
PROFILES: dict[str, Profile] = {
    p.encoder: p
    for p in (
        Profile(
            encoder="h264_nvenc",
            hardware=True,
            pix_fmt="yuv420p",
            h264_profile="main",
            codec_args=(
                "-preset", "p1", "-tune", "ull", "-zerolatency", "1", "-delay", "0",
                "-rc-lookahead", "0", "-bf", "0", "-rc", "cbr",
            ),
            runtime_errors=(
                "OpenEncodeSessionEx failed", "No NVENC capable devices", "Cannot load libcuda",
                "Cannot load libnvidia-encode", "InitializeEncoder failed", "EncodePicture failed",
                "required nvenc API version", "CUDA_ERROR", "Error while opening encoder",
            ),
        ),
        Profile(
            encoder="h264_qsv",
            hardware=True,
            pix_fmt="nv12",
            h264_profile="main",
            codec_args=(
                "-preset", "veryfast", "-look_ahead", "0", "-async_depth", "1", "-bf", "0",
            ),
            runtime_errors=(
                "MFX session", "Error initializing the encoder", "Error during encoding",
                "Error while opening encoder",
            ),
        ),
        Profile(
            encoder="h264_vaapi",
            hardware=True,
            pix_fmt="vaapi",
            h264_profile="main",
            codec_args=("-rc_mode", "CBR", "-async_depth", "1", "-bf", "0"),
            global_args=("-vaapi_device", VAAPI_DEVICE),
            upload_filter="format=nv12,hwupload",
            runtime_errors=(
                "No VA display", "VAAPI connection", "vaapi_device", "Device creation failed",
                "Failed to upload", "Error while opening encoder",
            ),
        ),
        Profile(
            encoder="h264_videotoolbox",
            hardware=True,
            pix_fmt="nv12",
            h264_profile="main",
            codec_args=("-realtime", "1", "-prio_speed", "1", "-bf", "0"),
            runtime_errors=(
                "VTCompressionSession", "cannot create compression session",
                "Error while opening encoder",
            ),
        ),
        Profile(
            encoder=SOFTWARE_ENCODER,
            hardware=False,
            pix_fmt="yuv420p",
            h264_profile="baseline",
            codec_args=(
                "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0", "-sc_threshold", "0",
            ),
            quality_floor=("-qmin", "20"),
        ),
    )
}

# Default bitrates at 30 fps, by pixel count (first row whose limit the frame fits in).
_BITRATES_KBPS: tuple[tuple[int, int], ...] = (
    (320 * 240, 400),
    (640 * 360, 800),
    (854 * 480, 1200),
    (1280 * 720, 2500),
    (1920 * 1080, 4500),
    (2560 * 1440, 8000),
)
_BITRATE_MAX_KBPS = 12000


class UnknownEncoder(EncoderError):
    """``encoder`` has no row in :data:`PROFILES`."""

    def __init__(self, encoder: str) -> None:
        super().__init__(
            f"no low-latency profile for encoder {encoder!r}; known: {', '.join(PROFILES)}"
        )
        self.encoder = encoder


def profile_for(encoder: str) -> Profile:
    """The table row for ``encoder``; :class:`UnknownEncoder` if there is none."""
    try:
        return PROFILES[encoder]
    except KeyError:
        raise UnknownEncoder(encoder) from None


def default_bitrate_kbps(fmt: VideoFormat) -> int:
    """A bitrate that looks clean for moving content at this size, scaled by frame rate."""
    pixels = fmt.width * fmt.height
    base = next((kbps for limit, kbps in _BITRATES_KBPS if pixels <= limit), _BITRATE_MAX_KBPS)
    scale = min(max(fmt.fps / 30, 0.5), 2.0)
    return int(base * scale)


def default_gop(fmt: VideoFormat) -> int:
    """Frames between keyframes: a third of a second.

    A new viewer's first picture waits for the next keyframe. Measured through the real
    MediaMTX (docs/performance.md, "GOP"), a 1/3 s GOP shows it in 478 ms against 718 ms for
    1 s, at the same bitrate (the rate is constant) and 0.1-0.6 dB less PSNR (``python -m bench gop``).
    """
    return max(1, fmt.fps // 3)


def default_threads(fmt: VideoFormat) -> int:
    """libx264 threads: one up to 540p, then more slices as the frame grows.

    ultrafast encodes 640x360 at ~560 fps on one core here, so one thread has >10x headroom
    and each stream stays on one core while many streams share a host. Zerolatency threads
    are slices of one frame (no frame delay), so at 720p and up a few of them cut the time
    to encode each frame - the latency - at a small bitrate cost.
    """
    pixels = fmt.width * fmt.height
    if pixels <= 960 * 540:
        return 1
    if pixels <= 1280 * 720:
        return 2
    return 4


def _input_args(profile: Profile, fmt: VideoFormat) -> list[str]:
    # Timestamps: the pump writes frames when they are fresh, at most at fps, and repeats
    # the last one only about once a second while the producer is paused. Each frame is
    # stamped with the wall clock at the moment FFmpeg reads it from the pipe
    # (-use_wallclock_as_timestamps), and the output is made constant-rate at the announced
    # fps (-fps_mode cfr -r fps, below): FFmpeg duplicates the previous frame to fill any gap
    # and drops frames that come early. So video time follows wall time - a paused or slow
    # producer can make the picture freeze, never make the video run fast or slow - and the
    # stream stays exactly fps frames per second of video, which keeps GOP = fps frames = 1 s.
    # Without wallclock stamps rawvideo numbers frames 0,1,2… at 1/fps each and a 1 frame/s
    # heartbeat would play back 30x too fast.
    return [
        *profile.global_args,
        "-f", "rawvideo",
        "-pix_fmt", fmt.pix_fmt,
        "-s", f"{fmt.width}x{fmt.height}",
        "-framerate", str(fmt.fps),
        "-use_wallclock_as_timestamps", "1",
        # Deliberately no "-fflags nobuffer" / "-flags low_delay" here: raw frames need no
        # probing buffer and no decoder delay, so they would gain nothing, and with nobuffer
        # libavformat throws away the frame it read while probing (measured on FFmpeg 9: it
        # then needs a second frame before it even connects). They belong on the receiving
        # side (tests/support/rtsp.py), where an H.264 decoder would otherwise hold frames.
        "-i", "pipe:0",
    ]


def _encode_args(
    profile: Profile,
    fmt: VideoFormat,
    *,
    gop: int | None,
    bitrate_kbps: int | None,
    threads: int | None,
) -> list[str]:
    gop = gop or default_gop(fmt)
    kbps = bitrate_kbps or default_bitrate_kbps(fmt)
    if profile.upload_filter:
        pixels = ["-vf", profile.upload_filter]
    else:
        # bgr24 left to the encoder's default becomes High 4:4:4, which browsers cannot decode
        pixels = ["-pix_fmt", profile.pix_fmt]
    args = [
        "-map", "0:v:0",
        *pixels,
        "-c:v", profile.encoder,
        *profile.codec_args,
        "-profile:v", profile.h264_profile,
        "-g", str(gop),
        "-keyint_min", str(gop),
        # the bitrate, never above it, with a one-second VBV: room for the keyframe that opens
        # each GOP; below it where the quality floor is reached (libx264)
        "-b:v", f"{kbps}k",
        "-maxrate", f"{kbps}k",
        "-bufsize", f"{kbps}k",
        *profile.quality_floor,
    ]
    if not profile.hardware:
        args += ["-threads", str(threads or default_threads(fmt))]
    args += ["-fps_mode", "cfr", "-r", str(fmt.fps)]
    return args


def build_command(
    ffmpeg: str,
    encoder: str,
    fmt: VideoFormat,
    url: str,
    *,
    gop: int | None = None,
    bitrate_kbps: int | None = None,
    threads: int | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The FFmpeg command publishing raw ``fmt`` frames from stdin to ``url`` over RTSP/TCP.

    ``gop`` defaults to :func:`default_gop` (a keyframe every third of a second), ``bitrate_kbps`` to a value by resolution,
    ``threads`` (libx264 only) to :func:`default_threads`. ``extra`` goes just before the
    output. stdout carries ``-progress`` blocks every 0.2 s (so "publishing" is known within a
    fifth of a second of FFmpeg's first packet, not half a second); stderr carries errors only.
    ``url`` holds a token: pass the result through ``scrub`` before logging any of it.
    """
    profile = profile_for(encoder)
    return [
        *_quiet(ffmpeg),
        "-progress", "pipe:1",
        "-stats_period", "0.2",
        *_input_args(profile, fmt),
        *_encode_args(profile, fmt, gop=gop, bitrate_kbps=bitrate_kbps, threads=threads),
        # SPS/PPS before every keyframe: the RTSP muxer otherwise puts them only in the SDP,
        # and a reader that joins mid-stream (or forwards packets) needs them in band
        "-bsf:v", "dump_extra=freq=keyframe",
        *extra,
        "-f", "rtsp",
        "-rtsp_transport", "tcp",
        url,
    ]


def _quiet(ffmpeg: str) -> list[str]:
    """FFmpeg that reads no terminal and prints errors only (publisher and probe alike)."""
    return [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats"]


def build_probe_command(ffmpeg: str, encoder: str, fmt: VideoFormat, frames: int) -> list[str]:
    """The same encode as :func:`build_command`, ``frames`` frames from stdin, into ``-f null``."""
    profile = profile_for(encoder)
    return [
        *_quiet(ffmpeg),
        *_input_args(profile, fmt),
        *_encode_args(profile, fmt, gop=None, bitrate_kbps=None, threads=None),
        "-frames:v", str(frames),
        "-f", "null",
        "-",
    ]


def is_runtime_failure(encoder: str, line: str) -> bool:
    """Whether FFmpeg error ``line`` says the hardware behind ``encoder`` cannot encode here."""
    profile = PROFILES.get(encoder)
    return profile is not None and profile.hardware and any(
        marker in line for marker in profile.runtime_errors
    )


__all__ = [
    "PROFILES",
    "SOFTWARE_ENCODER",
    "Profile",
    "UnknownEncoder",
    "build_command",
    "build_probe_command",
    "default_bitrate_kbps",
    "default_gop",
    "default_threads",
    "is_runtime_failure",
    "profile_for",
]


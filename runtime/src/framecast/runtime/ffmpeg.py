"""Where the FFmpeg binary is, and how to keep secrets out of everything FFmpeg says.

Shared by capture (its decoding sources) and the encoder.

FFmpeg echoes its output URL in error messages, and framecast's publish URL carries a
MediaMTX token (as a ``token=`` query value or as the RTSP password). Every FFmpeg line
that reaches a log, an event or an exception goes through :func:`scrub` first.
"""

from __future__ import annotations

import os
import re
import shutil

from framecast.proto.errors import FramecastError

FFMPEG_ENV = "FRAMECAST_FFMPEG"

_REDACTED = "***"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host  and  scheme://token@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@"), rf"\1{_REDACTED}@"),
    # ?token=…, &jwt=…, …&password=… in any URL or query string
    (
        re.compile(
            r"(?i)([?&;](?:token|jwt|access_token|auth|password|passwd|pass|pwd|secret|key|sig|signature)=)"
            r"[^&\s'\"]*?(?=:\s|:$|[&\s'\"]|$)"  # up to the next parameter, or FFmpeg's ": error"
        ),
        rf"\1{_REDACTED}",
    ),
    # Authorization: Basic …, Proxy-Authorization: Digest username=…, …: the rest of the line
    (re.compile(r"(?i)\b((?:proxy-)?authorization\s*[:=]\s*)[^\r\n]*"), rf"\1{_REDACTED}"),
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]+=*"), rf"\1{_REDACTED}"),
    # a bare JWT anywhere (header.payload.signature, base64url)
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), _REDACTED),
)

# "[vost#0:0/h264_nvenc @ 0x55d0c0a1b2c0] [enc:h264_nvenc @ 0x55d0…] " carries nothing for a reader
_LOG_PREFIX = re.compile(r"^(?:\[[^\]]*@ 0x[0-9a-f]+\]\s*)+")


class FFmpegNotFound(FramecastError):
    """No usable FFmpeg binary: ``tried`` names what was looked for and where."""

    def __init__(self, tried: str) -> None:
        super().__init__(
            f"FFmpeg not found ({tried}); set {FFMPEG_ENV} to an ffmpeg binary "
            "or install the imageio-ffmpeg wheel"
        )
        self.tried = tried


def find_ffmpeg() -> str:
    """The FFmpeg binary to run: ``$FRAMECAST_FFMPEG`` if set, else the imageio-ffmpeg one."""
    configured = os.environ.get(FFMPEG_ENV, "").strip()
    if configured:
        found = shutil.which(configured)
        if found is None:
            raise FFmpegNotFound(f"{FFMPEG_ENV}={configured!r} is not an executable file")
        return found
    try:
        import imageio_ffmpeg
    except ImportError as exc:
        raise FFmpegNotFound(f"{FFMPEG_ENV} is unset and imageio_ffmpeg is not installed") from exc
    try:
        exe = str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError as exc:
        raise FFmpegNotFound(f"imageio_ffmpeg has no binary: {exc}") from exc
    if not os.access(exe, os.X_OK):
        raise FFmpegNotFound(f"imageio_ffmpeg binary {exe!r} is not executable")
    return exe


def scrub(text: str) -> str:
    """``text`` with URL credentials, token/jwt query values and authorization values redacted."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def strip_log_prefix(line: str) -> str:
    """An FFmpeg log line without its ``[component @ 0xADDRESS]`` prefixes."""
    return _LOG_PREFIX.sub("", line).strip()

"""Choosing the H.264 encoder this host can really use.

An encoder being compiled into FFmpeg says nothing about the machine: the imageio-ffmpeg
build lists h264_nvenc, h264_qsv and h264_vaapi everywhere. So each candidate is tried
with a short real encode, with exactly the settings the publisher will use, and the first
one that works wins. Why every other candidate was passed over is kept for the operator.
"""

from __future__ import annotations

import asyncio
import logging
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from framecast.proto.messages import VideoFormat
from framecast.runtime.ffmpeg import scrub, strip_log_prefix

from .errors import EncoderError
from .profiles import build_probe_command, profile_for

log = logging.getLogger(__name__)

DEFAULT_CANDIDATES: tuple[str, ...] = (
    "h264_nvenc",
    "h264_qsv",
    "h264_vaapi",
    "h264_videotoolbox",
    "libx264",
)
PROBE_FORMAT = VideoFormat(width=320, height=240, fps=30, pix_fmt="bgr24")
PROBE_FRAMES = 3

# " V....D libx264   libx264 H.264 / AVC / ..." (flags column, then the name)
_ENCODER_LINE = re.compile(r"^\s*[VAS][A-Z.]{5}\s+(\S+)\s")


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The encoder chosen, and why each other candidate was passed over."""

    chosen: str
    reasons: dict[str, str] = field(default_factory=dict)


class EncoderUnavailable(EncoderError):
    """The forced encoder ``encoder`` cannot encode on this host, because of ``reason``."""

    def __init__(self, encoder: str, reason: str) -> None:
        super().__init__(f"encoder {encoder!r} is not usable here: {reason}")
        self.encoder = encoder
        self.reason = reason


class NoUsableEncoder(EncoderError):
    """No candidate encoder worked; ``reasons`` says why for each."""

    def __init__(self, reasons: dict[str, str]) -> None:
        detail = "; ".join(f"{name}: {why}" for name, why in reasons.items())
        super().__init__(f"no usable H.264 encoder ({detail})")
        self.reasons = reasons


class ProbeFailed(EncoderError):
    """``ffmpeg -encoders`` itself failed: ``detail`` is its scrubbed error output."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"could not list FFmpeg encoders: {detail}")
        self.detail = detail


def list_encoders(ffmpeg: str) -> set[str]:
    """The encoder names ``ffmpeg -hide_banner -encoders`` lists."""
    try:
        done = subprocess.run(
            [ffmpeg, "-hide_banner", "-encoders"],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProbeFailed(scrub(str(exc))) from exc
    if done.returncode != 0:
        raise ProbeFailed(scrub(done.stderr.strip()[-500:]) or f"exit code {done.returncode}")
    names = set()
    for line in done.stdout.splitlines():
        if match := _ENCODER_LINE.match(line):
            names.add(match.group(1))
    return names


async def try_encoder(ffmpeg: str, encoder: str, *, timeout: float = 10.0) -> str | None:
    """Encode a few synthetic frames with ``encoder``: None if it works, else why not."""
    command = build_probe_command(ffmpeg, encoder, PROBE_FORMAT, PROBE_FRAMES)
    frames = bytes(PROBE_FORMAT.frame_size * PROBE_FRAMES)
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return scrub(f"could not run FFmpeg: {exc}")
    try:
        _, stderr = await asyncio.wait_for(proc.communicate(frames), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return f"test encode did not finish within {timeout:g} s"
    if proc.returncode == 0:
        return None
    lines = [
        strip_log_prefix(line)
        for line in stderr.decode(errors="replace").splitlines()
        if line.strip()
    ]
    return scrub(lines[0]) if lines else f"test encode failed with exit code {proc.returncode}"


async def probe(
    ffmpeg: str,
    forced: str | None = None,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    *,
    timeout: float = 10.0,
) -> ProbeResult:
    """The first of ``candidates`` that lists and really encodes here, or ``forced``.

    ``forced`` (e.g. from FRAMECAST_ENCODER) is tried alone and raises
    :class:`EncoderUnavailable` when it does not work; otherwise :class:`NoUsableEncoder`
    is raised when no candidate works. ``timeout`` bounds each test encode.
    """
    listed = await asyncio.to_thread(list_encoders, ffmpeg)
    if forced is not None:
        profile_for(forced)  # UnknownEncoder for a name the table does not know
        if forced not in listed:
            raise EncoderUnavailable(forced, "not in this FFmpeg build")
        why = await try_encoder(ffmpeg, forced, timeout=timeout)
        if why is not None:
            raise EncoderUnavailable(forced, why)
        log.info("encoder %s chosen (forced)", forced)
        return ProbeResult(chosen=forced)
    reasons: dict[str, str] = {}
    for name in candidates:
        profile_for(name)
        if name not in listed:
            reasons[name] = "not in this FFmpeg build"
            continue
        why = await try_encoder(ffmpeg, name, timeout=timeout)
        if why is None:
            log.info(
                "encoder %s chosen%s",
                name,
                "".join(f"; passed over {n}: {r}" for n, r in reasons.items()),
            )
            return ProbeResult(chosen=name, reasons=reasons)
        reasons[name] = why
    raise NoUsableEncoder(reasons)

"""What FFmpeg says while it runs: ``-progress`` blocks on stdout, error lines on stderr.

FFmpeg prints its first ``-progress`` block only once every output has written its header
(``print_report`` waits for ``nb_output_dumped``), so a block with a frame counter above zero
means an RTSP server accepted RECORD (``total_size`` reads N/A for RTSP, which has no
byte-counting output file, so the frame counter is what is watched). Error lines are scrubbed
of secrets as they are read: FFmpeg echoes its output URL, and that URL carries a token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from framecast.runtime.ffmpeg import scrub

STDERR_LINES = 50
"""FFmpeg error lines kept per run and per supervisor."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Progress:
    """The latest ``-progress`` block FFmpeg printed (``at``: monotonic time it arrived)."""

    frame: int = 0
    fps: float = 0.0
    bitrate_kbps: float = 0.0
    total_size: int = 0
    out_time_us: int = 0
    speed: float = 0.0
    dup_frames: int = 0
    drop_frames: int = 0
    ended: bool = False
    at: float = 0.0


def _number(block: dict[str, str], key: str, cast: type[int] | type[float]) -> float:
    raw = block.get(key, "").strip().removesuffix("kbits/s").removesuffix("x")
    try:
        return cast(raw)
    except ValueError:
        return cast(0)


def parse_progress(block: dict[str, str], *, at: float) -> Progress:
    """A :class:`Progress` from one ``-progress`` key=value block ("N/A" reads as 0)."""
    return Progress(
        frame=int(_number(block, "frame", int)),
        fps=_number(block, "fps", float),
        bitrate_kbps=_number(block, "bitrate", float),
        total_size=int(_number(block, "total_size", int)),
        out_time_us=int(_number(block, "out_time_us", int)),
        speed=_number(block, "speed", float),
        dup_frames=int(_number(block, "dup_frames", int)),
        drop_frames=int(_number(block, "drop_frames", int)),
        ended=block.get("progress") == "end",
        at=at,
    )


async def read_progress(
    stream: asyncio.StreamReader,
    on_block: Callable[[Progress], Awaitable[None]],
    clock: Callable[[], float],
) -> None:
    """Hand each ``-progress`` block of ``stream`` to ``on_block`` until FFmpeg closes it."""
    block: dict[str, str] = {}
    async for raw in stream:
        key, _, value = raw.decode(errors="replace").strip().partition("=")
        block[key] = value
        if key != "progress":
            continue
        progress = parse_progress(block, at=clock())
        block = {}
        await on_block(progress)


async def read_errors(stream: asyncio.StreamReader, on_line: Callable[[str], None]) -> None:
    """Hand each non-empty line of FFmpeg's stderr, scrubbed, to ``on_line``."""
    async for raw in stream:
        line = scrub(raw.decode(errors="replace").rstrip())
        if line:
            on_line(line)

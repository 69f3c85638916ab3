"""Benchmark: what a shorter GOP costs, so the default keyframe interval is chosen by measurement.

A new viewer's first picture waits for the next keyframe (WebRTC) or segment (HLS): the glass
group measures that wait through the real MediaMTX. libx264's rate control is the bitrate
(``-b:v = -maxrate``) with a quality floor (``-qmin``): on busy content more keyframes do not
cost bits on the wire, they cost picture quality at the same bits; on still content, under the
floor, they cost bits. This group encodes the same
content with framecast's exact encoder arguments (profiles.py) at each GOP and measures both:
the bitrate achieved and the PSNR of what a viewer decodes against the source, side by side with
the 1 s GOP.

Content: FFmpeg's ``testsrc2`` (moving graphics, like an annotated CV overlay) and
``mandelbrot`` (fine detail changing every frame: hard content).
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from . import report
from .options import Options

SIZE = (640, 360)
FPS = 30
GOPS = (FPS, FPS // 2, FPS // 3)
CONTENT = {
    "testsrc2": f"testsrc2=size={SIZE[0]}x{SIZE[1]}:rate={FPS}",
    "mandelbrot": f"mandelbrot=size={SIZE[0]}x{SIZE[1]}:rate={FPS}",
}
_PSNR = re.compile(r"PSNR y:([\d.]+) u:([\d.]+) v:([\d.]+) average:([\d.]+)")


def _encode_args(gop: int) -> list[str]:
    from framecast.encoder import profiles
    from framecast.proto.messages import VideoFormat

    fmt = VideoFormat(width=SIZE[0], height=SIZE[1], fps=FPS)
    return profiles._encode_args(profiles.profile_for("libx264"), fmt, gop=gop, bitrate_kbps=None, threads=None)


def measure(ffmpeg: str, source: str, gop: int, seconds: int, folder: Path) -> dict[str, float]:
    encoded = folder / f"gop{gop}.h264"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", source,
                    "-t", str(seconds), *_encode_args(gop), "-f", "h264", str(encoded)], check=True)
    compared = subprocess.run(
        [ffmpeg, "-hide_banner", "-i", str(encoded), "-f", "lavfi", "-t", str(seconds), "-i", source,
         "-lavfi", "[0:v][1:v]psnr", "-f", "null", "-"],
        check=True, capture_output=True, text=True)
    match = _PSNR.search(compared.stderr)
    assert match is not None, compared.stderr[-500:]
    return {"psnr_y_db": float(match.group(1)), "psnr_db": float(match.group(4)),
            "kbps": encoded.stat().st_size * 8 / 1000 / seconds}


def run(options: Options) -> dict[str, Any]:
    from framecast.runtime.ffmpeg import find_ffmpeg

    ffmpeg = find_ffmpeg()
    seconds = 4 if options.quick else 20
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="framecast-bench-gop-") as tmp:
        for name, source in CONTENT.items():
            baseline: dict[str, float] | None = None
            for gop in GOPS:
                options.progress(f"gop: {name}, GOP {gop} frames")
                figures = measure(ffmpeg, source, gop, seconds, Path(tmp))
                baseline = baseline or figures
                results.append({"content": name, "gop_frames": gop, **figures})
                rows.append([name, f"{gop} ({gop / FPS:.2f} s)", round(figures["kbps"]), figures["psnr_db"],
                             round(figures["psnr_db"] - baseline["psnr_db"], 2),
                             round(figures["kbps"] / baseline["kbps"], 3)])
    table = report.table(
        ["content", "GOP frames", "kbit/s", "PSNR dB", "PSNR vs 1 s GOP", "bitrate ratio"], rows,
        title=f"GOP cost at {SIZE[0]}x{SIZE[1]}@{FPS}, libx264 with framecast's arguments, {seconds} s each",
    )
    return {"table": table, "rows": results, "settings": {"size": SIZE, "fps": FPS, "seconds": seconds,
                                                           "encode_args": _encode_args(FPS)}}

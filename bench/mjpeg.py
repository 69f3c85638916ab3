"""Benchmark 8 (issue 18): framecast beside the MJPEG endpoint it replaces, in one run.

Why: "why not MJPEG?" deserves numbers measured on the same frames, at the same picture
quality, on the same machine. Both sides get capture's test pattern at 30 fps:

- framecast: capture -> encoder (libx264) -> RTSP -> the real MediaMTX (bench.viewers.live_stream,
  every access through the auth hook) -> WebRTC viewers (aiortc peers in child processes,
  bench.viewer_peers, counting frames, not decoding);
- MJPEG: bench.mjpeg_server, one JPEG (libjpeg-turbo, 4:2:0) per frame shared by all viewers,
  ``multipart/x-mixed-replace`` to HTTP clients in child processes (bench.viewer_peers mjpeg).

Picture quality is matched first: one aiortc viewer decodes framecast's WebRTC video, each frame's
stamp gives its frame number and time, the pattern renders the source frame again, and the PSNR
of the two is taken (tests/test_glass_to_glass.py's check); the JPEG quality chosen is the lowest
whose decoded PSNR reaches framecast's median. Then, at 1, 10 and 50 viewers: bytes received
per viewer-second, and CPU per second of the serving process (MediaMTX; the MJPEG server less
its rendering and JPEG encoding, counted apart by thread time) with the one-time encode
(FFmpeg; the JPEG encode) reported separately. Glass-to-glass in Chromium: framecast's player
by WebRTC (bench.glass.measure, real MediaMTX) beside an ``<img>`` page reading each painted
frame's stamp with the player's own decoder at requestAnimationFrame, interleaved. Last, what
a viewer without credentials gets from each.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from . import procs, report, viewers
from .options import Options

FPS = 30
SIZES = ((640, 360), (1280, 720))
QUICK_SIZES = ((640, 360),)
COUNTS = (1, 10, 50)
QUICK_COUNTS = (1,)
WINDOW_S = 10.0
QUICK_WINDOW_S = 3.0
GLASS_WINDOW_S = 12.0  # the player's meter keeps 10 s: every sample from steady playback
QUICK_GLASS_WINDOW_S = 4.0
DEFAULT_REPEAT = 3  # glass-to-glass, interleaved framecast / MJPEG
PSNR_FRAMES = 60
PSNR_WARMUP = 15  # frames before the first keyframe's successors settle
ROOT = Path(__file__).resolve().parent.parent


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255**2 / mse) if mse else math.inf


# ----- picture quality ---------------------------------------------------------------------------


async def framecast_psnr(live: viewers.Live, size: tuple[int, int], frames: int) -> dict[str, Any]:
    """PSNR of what a WebRTC viewer decodes against the pattern frame it was sent."""
    from framecast.frames.pattern import TestPattern, read_stamp
    from tests.support.whep_bridge import loopback_only_ice

    from .viewer_peers import whep_viewer

    loopback_only_ice()
    pattern = TestPattern(*size)
    token = (await live.viewer_tokens(1))[0]
    values: list[float] = []
    unreadable = 0
    async with httpx.AsyncClient(timeout=10) as http:
        pc = await whep_viewer(live.urls["whep"], token, http, asyncio.Event())
    try:
        track = pc.getTransceivers()[0].receiver.track
        for n in range(frames + PSNR_WARMUP):
            image = (await asyncio.wait_for(track.recv(), 10)).to_ndarray(format="bgr24")
            if n < PSNR_WARMUP:
                continue
            stamp = read_stamp(image)
            if stamp is None:
                unreadable += 1
                continue
            values.append(psnr(image, pattern.render(stamp.frame_no, stamp.ms)))
    finally:
        await pc.close()
    return {"psnr_db": report.median(values), "psnr_min_db": min(values, default=float("nan")),
            "frames": len(values), "unreadable": unreadable}


def jpeg_psnr(size: tuple[int, int], quality: int, frames: int = 20) -> tuple[float, int]:
    """Median PSNR of the pattern through JPEG at ``quality``, and the median JPEG's bytes."""
    import simplejpeg

    from framecast.frames.pattern import TestPattern

    pattern = TestPattern(*size)
    values, sizes = [], []
    for n in range(frames):
        image = pattern.render(n * 7, 1_700_000_000_000 + n * 33)
        jpeg = simplejpeg.encode_jpeg(image, quality, colorspace="BGR", colorsubsampling="420")
        values.append(psnr(simplejpeg.decode_jpeg(jpeg, colorspace="BGR"), image))
        sizes.append(len(jpeg))
    return report.median(values), int(report.median(sizes))


def matching_quality(size: tuple[int, int], target_db: float) -> int:
    """The lowest JPEG quality whose PSNR reaches ``target_db`` (PSNR grows with quality)."""
    low, high = 5, 100
    while low < high:
        middle = (low + high) // 2
        if jpeg_psnr(size, middle)[0] >= target_db:
            high = middle
        else:
            low = middle + 1
    return low


# ----- fan-out: CPU and bytes per viewer -------------------------------------------------------


async def fan_out(kind: str, url: str, tokens: list[str], pids: dict[str, list[int]], window_s: float,
                  stats: Any = None) -> dict[str, Any]:
    """``len(tokens)`` viewers (none: an idle window) in child processes; CPU per second of each
    named process and bytes per viewer-second over one steady window."""
    children, joined = await viewers._viewers(kind, url, tokens) if tokens else ([], {"joined": 0, "failures": []})
    if tokens:
        await asyncio.sleep(viewers.SETTLE_S)
    meter = procs.CpuMeter({**pids, "viewers": [c.pid for c in children]})
    first = await asyncio.to_thread(viewers._mark, children)
    before = await stats() if stats else {}
    meter.start()
    await asyncio.sleep(window_s)
    meter.stop()
    after = await stats() if stats else {}
    last = await asyncio.to_thread(viewers._mark, children)
    stopped = await asyncio.to_thread(viewers._stop_viewers, children) if children else {"failed_later": 0}
    n = max(joined["joined"], 1)
    row = {
        "viewers": len(tokens), "joined": joined["joined"], "failures": joined["failures"][:3],
        "failed_later": stopped["failed_later"], "machine_busy": meter.machine_busy,
        **{f"{name}_cpu_per_s": used / meter.wall for name, used in meter.used.items()},
        "bytes_per_viewer_s": (last["bytes"] - first["bytes"]) / n / meter.wall if tokens else float("nan"),
        "frames_per_viewer_s": (last["units"] - first["units"]) / n / meter.wall if tokens else float("nan"),
    }
    for key in ("render_cpu_s", "encode_cpu_s"):
        if key in after:
            row[key.replace("_s", "_per_s")] = (after[key] - before[key]) / meter.wall
    if stats:
        row["skipped_parts"] = after["skipped_parts"] - before["skipped_parts"]
    return row


def _encoder_pids() -> list[int]:
    """The encoder's FFmpeg (a child of this process: the encoder service runs in it)."""
    return [pid for pid, command in procs.children_of(os.getpid()) if "ffmpeg" in command]


async def _unauthenticated(live: viewers.Live) -> dict[str, int]:
    async with httpx.AsyncClient(timeout=10) as http:
        whep = await http.post(live.urls["whep"], content=b"v=0\r\n", headers={"Content-Type": "application/sdp"})
        hls = await http.get(live.urls["hls"], follow_redirects=True)  # MediaMTX first redirects to a session
    return {"whep": whep.status_code, "hls": hls.status_code}


async def measure_framecast(size: tuple[int, int], counts: tuple[int, ...], window_s: float,
                            options: Options) -> dict[str, Any]:
    label = f"{size[0]}x{size[1]}"
    async with viewers.live_stream(size, label="mjpeg") as live:
        unauth = await _unauthenticated(live)
        quality = await framecast_psnr(live, size, PSNR_FRAMES // (2 if options.quick else 1))
        options.progress(f"mjpeg {label}: framecast PSNR {quality['psnr_db']:.2f} dB ({quality['frames']} frames); "
                         f"without a token WHEP {unauth['whep']}, HLS {unauth['hls']}")
        pids = {"server": [live.server.process.pid], "encode": _encoder_pids()}
        rows = []
        for count in (0, *counts):
            row = await fan_out("whep", live.urls["whep"], await live.viewer_tokens(count), pids, window_s)
            rows.append(row)
            options.progress(f"mjpeg {label}: framecast {count} viewers: MediaMTX {row['server_cpu_per_s']:.3f} "
                             f"CPU-s/s, encoder {row['encode_cpu_per_s']:.3f}, "
                             f"{row['bytes_per_viewer_s'] * 8 / 1000:.0f} kbit/s each, machine "
                             f"{row['machine_busy']:.0%} busy")
    return {"psnr": quality, "unauthenticated": unauth, "rows": rows}


class MjpegServer:
    """bench.mjpeg_server as a child process: ``async with MjpegServer(size, q) as server``."""

    def __init__(self, size: tuple[int, int], quality: int) -> None:
        self.size, self.quality = size, quality
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    async def __aenter__(self) -> MjpegServer:
        self.proc = procs.spawn([sys.executable, "-m", "bench.mjpeg_server", *map(str, self.size), str(self.quality)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 30)
        self.url = f"http://127.0.0.1:{json.loads(line)['port']}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            await asyncio.to_thread(procs.stop, self.proc)

    async def stats(self) -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=10) as http:
            return (await http.get(f"{self.url}/stats")).json()


async def measure_mjpeg(size: tuple[int, int], quality: int, counts: tuple[int, ...], window_s: float,
                        options: Options) -> dict[str, Any]:
    label = f"{size[0]}x{size[1]}"
    async with MjpegServer(size, quality) as server:
        assert server.proc is not None
        async with httpx.AsyncClient(timeout=10) as http, http.stream("GET", f"{server.url}/mjpeg") as reply:
            unauth = reply.status_code  # no credentials asked for, none given
        await asyncio.sleep(1.0)
        rows = []
        for count in (0, *counts):
            row = await fan_out("mjpeg", f"{server.url}/mjpeg", ["-"] * count, {"server": [server.proc.pid]},
                                window_s, server.stats)
            row["serving_cpu_per_s"] = row["server_cpu_per_s"] - row["render_cpu_per_s"] - row["encode_cpu_per_s"]
            rows.append(row)
            options.progress(f"mjpeg {label}: MJPEG q{quality} {count} viewers: process {row['server_cpu_per_s']:.3f} "
                             f"CPU-s/s (serving {row['serving_cpu_per_s']:.3f}, encode {row['encode_cpu_per_s']:.3f}), "
                             f"{row['bytes_per_viewer_s'] * 8 / 1000:.0f} kbit/s each, {row['skipped_parts']} parts "
                             f"skipped, machine {row['machine_busy']:.0%} busy")
    return {"unauthenticated": unauth, "rows": rows}


# ----- glass-to-glass ----------------------------------------------------------------------------


async def mjpeg_glass(size: tuple[int, int], quality: int, window_s: float) -> dict[str, Any]:
    """An ``<img>`` of the MJPEG stream in Chromium; display time - stamp, read at each animation frame."""
    from tests.support.browser import chromium_page

    async with MjpegServer(size, quality) as server, chromium_page(width=1400, height=900) as page:
        await page.goto(f"{server.url}/")
        await page.wait_for_function("window.mjpegSamples && window.mjpegSamples.length > 10", timeout=30_000)
        skip = await page.evaluate("window.mjpegSamples.length")
        await asyncio.sleep(window_s)
        samples = (await page.evaluate("window.mjpegSamples"))[skip:]
    return {"p50_ms": report.percentile(samples, 50), "p95_ms": report.percentile(samples, 95),
            "samples": len(samples), "window_s": window_s}


async def glass_pairs(sizes: tuple[tuple[int, int], ...], qualities: dict[str, int], repeat: int,
                      window_s: float, options: Options) -> dict[str, dict[str, list[dict[str, Any]]]]:
    from framecast.devstack.nats import NatsServer

    from . import glass

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {f"{w}x{h}": {"framecast": [], "mjpeg": []}
                                                        for w, h in sizes}
    nats = await NatsServer().start()
    try:
        for _ in range(repeat):  # interleaved: a slow minute of the machine hits both
            for size in sizes:
                label = f"{size[0]}x{size[1]}"
                for system in ("framecast", "mjpeg"):
                    try:
                        if system == "framecast":
                            got = await glass.measure(nats.url, glass.Row("framecast", size, server="mediamtx"),
                                                      window_s)
                        else:
                            got = await mjpeg_glass(size, qualities[label], window_s)
                    except Exception as exc:  # a failed run is reported, the others still run
                        got = {"error": f"{type(exc).__name__}: {exc}"}
                    runs[label][system].append(got)
                    options.progress(f"mjpeg {label}: glass {system}: "
                                     + (got.get("error") or f"p50 {got['p50_ms']:.0f} ms, p95 {got['p95_ms']:.0f} ms"))
    finally:
        await nats.stop()
    return runs


# ----- the group ---------------------------------------------------------------------------------


def _skip_reason() -> str | None:
    from tests.support.browser import CHROMIUM
    from tests.support.real_mediamtx import BINARY

    if BINARY is None:
        return "no mediamtx binary (PATH, FRAMECAST_MEDIAMTX_BIN or `framecast mediamtx install`)"
    if not CHROMIUM.exists():
        return f"no Debian chromium at {CHROMIUM} (sudo apt-get install -y chromium)"
    for module in ("aiortc", "simplejpeg", "playwright"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (make install)"
    return None


async def _measure(options: Options) -> dict[str, Any]:
    sizes = QUICK_SIZES if options.quick else SIZES
    counts = QUICK_COUNTS if options.quick else COUNTS
    window_s = QUICK_WINDOW_S if options.quick else WINDOW_S
    out: dict[str, Any] = {"sizes": {}}
    qualities = {}
    for size in sizes:
        label = f"{size[0]}x{size[1]}"
        fc = await measure_framecast(size, counts, window_s, options)
        quality = matching_quality(size, fc["psnr"]["psnr_db"])
        jpeg_db, jpeg_bytes = jpeg_psnr(size, quality)
        qualities[label] = quality
        options.progress(f"mjpeg {label}: JPEG quality {quality} gives {jpeg_db:.2f} dB, {jpeg_bytes} bytes a frame")
        mj = await measure_mjpeg(size, quality, counts, window_s, options)
        out["sizes"][label] = {"framecast": fc, "mjpeg": {**mj, "quality": quality, "psnr_db": jpeg_db,
                                                          "jpeg_bytes": jpeg_bytes}}
    repeat = options.repeat or (1 if options.quick else DEFAULT_REPEAT)
    glass_window = QUICK_GLASS_WINDOW_S if options.quick else GLASS_WINDOW_S
    glass_runs = await glass_pairs(sizes, qualities, repeat, glass_window, options)
    for label, by_system in glass_runs.items():
        for system, runs in by_system.items():
            ok = [r for r in runs if "error" not in r]
            out["sizes"][label][system]["glass"] = {
                "p50_ms": report.median([r["p50_ms"] for r in ok]), "p95_ms": report.median([r["p95_ms"] for r in ok]),
                "runs": len(ok), "errors": [r["error"] for r in runs if "error" in r], "each": runs}
    out.update(window_s=window_s, counts=counts, glass_window_s=glass_window, glass_repeat=repeat)
    return out


def run(options: Options) -> dict[str, Any]:
    skipped = _skip_reason()
    if skipped is not None:
        return {"group": "mjpeg", "skipped": skipped, "results": [], "table": f"mjpeg skipped: {skipped}"}
    began = time.time()
    measured = asyncio.run(_measure(options))
    return {"group": "mjpeg", "settings": {"fps": FPS, "window_s": measured["window_s"],
                                           "glass_window_s": measured["glass_window_s"],
                                           "glass_repeat": measured["glass_repeat"], "started": began},
            "results": measured["sizes"], "table": render(measured)}


def _by_count(rows: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["viewers"]: r for r in rows}


def render(measured: dict[str, Any]) -> str:
    summary, cpu = [], []
    for label, both in measured["sizes"].items():
        fc, mj = both["framecast"], both["mjpeg"]
        f_rows, m_rows = _by_count(fc["rows"]), _by_count(mj["rows"])
        top = max(measured["counts"])
        f_bytes = report.median([r["bytes_per_viewer_s"] for r in fc["rows"] if r["viewers"]])
        m_bytes = report.median([r["bytes_per_viewer_s"] for r in mj["rows"] if r["viewers"]])
        f_cpu = f_rows[top]["server_cpu_per_s"] + f_rows[top]["encode_cpu_per_s"]
        m_cpu = m_rows[top]["server_cpu_per_s"] - m_rows[top]["render_cpu_per_s"]
        fg, mg = fc["glass"], mj["glass"]
        summary += [
            [label, "framecast (WebRTC, MediaMTX)", fc["psnr"]["psnr_db"], f_bytes * 8 / 1000, f_cpu,
             fg["p50_ms"], fg["p95_ms"], f"WHEP {fc['unauthenticated']['whep']}, HLS {fc['unauthenticated']['hls']}"],
            [label, f"MJPEG (JPEG q{mj['quality']})", mj["psnr_db"], m_bytes * 8 / 1000, m_cpu, mg["p50_ms"],
             mg["p95_ms"], f"{mj['unauthenticated']} (the video)"],
            [label, "framecast / MJPEG", fc["psnr"]["psnr_db"] - mj["psnr_db"], f_bytes / m_bytes, f_cpu / m_cpu,
             fg["p50_ms"] / mg["p50_ms"], fg["p95_ms"] / mg["p95_ms"], "-"],
        ]
        base_f, base_m = f_rows[0], m_rows[0]
        for count in measured["counts"]:
            f, m = f_rows[count], m_rows[count]
            cpu.append([
                label, count, f["joined"], f["server_cpu_per_s"],
                (f["server_cpu_per_s"] - base_f["server_cpu_per_s"]) / max(f["joined"], 1) * 100,
                f["encode_cpu_per_s"], m["joined"], m["serving_cpu_per_s"],
                (m["serving_cpu_per_s"] - base_m["serving_cpu_per_s"]) / max(m["joined"], 1) * 100,
                m["encode_cpu_per_s"], m["skipped_parts"],
                (f["server_cpu_per_s"] + f["encode_cpu_per_s"]) / (m["serving_cpu_per_s"] + m["encode_cpu_per_s"]),
                f"{f['machine_busy']:.0%}/{m['machine_busy']:.0%}",
            ])
    text = report.table(
        ["stream", "system", "PSNR dB", "kbit/s per viewer", f"server CPU-s/s at {max(measured['counts'])}",
         "g2g p50 ms", "g2g p95 ms", "no credentials"], summary,
        title="why not MJPEG? the same test pattern at 30 fps, matched picture quality (delta / ratio rows)")
    text += ("\n(PSNR: framecast's as an aiortc WebRTC viewer decodes it, JPEG's at the lowest quality reaching it; "
             "kbit/s: received by each viewer (H.264 frame payload; multipart body), median over viewer counts; "
             "server CPU: MediaMTX + encoder FFmpeg vs the MJPEG process less rendering the pattern; g2g: Chromium, "
             f"framecast's player (WebRTC) vs an <img> read at requestAnimationFrame, medians of "
             f"{measured['glass_repeat']} interleaved runs)\n\n")
    text += report.table(
        ["stream", "viewers", "WebRTC joined", "MediaMTX CPU-s/s", "% core / viewer", "x264 CPU-s/s",
         "MJPEG joined", "MJPEG serving CPU-s/s", "% core / viewer", "JPEG encode CPU-s/s", "parts skipped",
         "framecast / MJPEG CPU", "machine busy"], cpu,
        title=f"server CPU by viewers ({measured['window_s']:.0f} s windows): MediaMTX vs the MJPEG server's "
              "serving (its process less rendering and encoding), one-time encodes apart")
    text += ("\n(% core / viewer: less the same process with no viewer, per viewer; framecast / MJPEG CPU: "
             "(MediaMTX + x264) / (MJPEG serving + JPEG encode); parts skipped: frames an MJPEG viewer's full socket "
             "made the server drop; machine busy: all CPUs, anyone, framecast/MJPEG windows)")
    return text

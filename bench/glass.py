"""Benchmark 5: glass-to-glass latency in a real browser, the figure the product is judged by.

framecast's real services run in this process (auth, encoder with libx264, capture's test
pattern, gateway), the gateway's own player page plays the stream in Debian's Chromium by
WebRTC, and the player's latency meter reads the wall-clock stamp from each presented frame's
pixels (display time - stamp; p50/p95 over its last 10 s window, as the stats overlay shows).
MediaMTX's part is played twice, side by side: by tests.support.whep_bridge (RTSP ingest, H.264
forwarded untouched to WHEP), and - where a binary is present - by the real MediaMTX
(tests.support.real_mediamtx), by WebRTC and by HLS (fMP4 and low-latency variants), with
shorter GOPs too, their bitrate read from MediaMTX's API (``inboundBytes`` over the window), so
the encoder's default GOP can be chosen by measurement. Real-MediaMTX rows are skipped, saying
why, where no binary is found.

Side by side, the same page, stack and meter with the bridge's viewers sent a pattern that
aiortc encodes in-process instead of the encoder's video: a WebRTC sender with nothing in front
of it. The ratio says what framecast's path (ring, pump, FFmpeg x264, RTSP, forwarding) adds.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import report
from .options import Options

FPS = 30


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    size: tuple[int, int]
    forwarded: bool = True
    """Viewers get the encoder's video (True) or, bridge only, aiortc's own pattern."""
    gop: int = FPS
    """Frames between keyframes (1 s unless named; the encoder's default is now 1/3 s,
    chosen from the rows below)."""
    server: str = "bridge"
    """``bridge`` (the stand-in) or ``mediamtx`` (the real binary)."""
    via: str = "whep"
    """How the player plays: ``whep`` or ``hls``."""
    hls_variant: str = "fmp4"
    quick: bool = True
    """Also in a --quick run."""


ROWS = (
    Row("framecast", (640, 360)),
    Row("framecast", (1280, 720)),
    Row("framecast, GOP 1/3 s", (640, 360), gop=FPS // 3, quick=False),
    Row("floor: aiortc encodes in-process", (640, 360), forwarded=False),
    Row("MediaMTX", (640, 360), server="mediamtx"),
    Row("MediaMTX", (1280, 720), server="mediamtx", quick=False),
    Row("MediaMTX, GOP 1/2 s", (640, 360), gop=FPS // 2, server="mediamtx", quick=False),
    Row("MediaMTX, GOP 1/3 s", (640, 360), gop=FPS // 3, server="mediamtx", quick=False),
    Row("MediaMTX HLS fMP4", (640, 360), server="mediamtx", via="hls"),
    Row("MediaMTX HLS low-latency", (640, 360), server="mediamtx", via="hls", hls_variant="lowLatency", quick=False),
)
WINDOW_S = 12.0  # the meter's window is 10 s: every sample comes from steady playback
QUICK_WINDOW_S = 4.0
DEFAULT_REPEAT = 5  # a run's p50 moves by tens of ms with the phase of capture, encoder and display
API_KEY = "bench-glass-" + secrets.token_hex(8)
SKIPPED = "skipped: no mediamtx binary (PATH, FRAMECAST_MEDIAMTX_BIN or `framecast mediamtx install`)"


async def measure(nats_url: str, row: Row, window_s: float) -> dict[str, Any]:
    from framecast.auth import AuthSettings
    from framecast.auth import lifespan as auth_lifespan
    from framecast.capture.service import lifespan as capture_lifespan
    from framecast.capture.settings import CaptureSettings
    from framecast.encoder.service import lifespan as encoder_lifespan
    from framecast.encoder.settings import EncoderSettings
    from framecast.gateway.service import lifespan as gateway_lifespan
    from framecast.gateway.settings import GatewaySettings
    from framecast.proto import subjects
    from framecast.proto.bus import Bus
    from framecast.proto.messages import Accepted, StartStream, TestPatternSource, VideoFormat
    from framecast.proto.states import StreamState
    from framecast.proto.store import StateStore
    from framecast.runtime.lifecycle import Runtime
    from tests.support.browser import chromium_page, wait_playing
    from tests.support.fake_mediamtx import FakeMediaMTX
    from tests.support.real_mediamtx import real_mediamtx
    from tests.support.rtsp import free_port
    from tests.support.services import running, wait_for_state
    from tests.support.whep_bridge import WhepBridge

    width, height = row.size
    stream_id = f"bench-glass-{width}-{secrets.token_hex(3)}"
    auth_addr = f"127.0.0.1:{free_port()}"
    quiet = {"nats_url": nats_url, "log_level": "warning"}
    async with AsyncExitStack() as stack:
        keys = stack.enter_context(tempfile.TemporaryDirectory(prefix="framecast-bench-keys-"))
        await stack.enter_async_context(running("auth", AuthSettings(
            **quiet, auth_addr=auth_addr, auth_key_dir=str(Path(keys))), auth_lifespan))
        bus = await Bus.connect(nats_url, client_id="bench-glass")
        stack.push_async_callback(bus.close)
        real = None
        if row.server == "mediamtx":
            real = await stack.enter_async_context(real_mediamtx(Path(keys), auth_addr, hls_variant=row.hls_variant))
            rtsp_base, whep_base, hls_base, api_url = real.rtsp, real.whep, real.hls, real.api
        else:
            bridge = await stack.enter_async_context(WhepBridge(
                stream_id, hook_url=f"http://{auth_addr}/mediamtx/auth",
                local_pattern=None if row.forwarded else (width, height)))
            api_url = (await stack.enter_async_context(FakeMediaMTX())).url
            rtsp_base, whep_base, hls_base = bridge.rtsp_base, bridge.whep_base, f"http://127.0.0.1:{free_port()}"
        await stack.enter_async_context(running("encoder", EncoderSettings(
            **quiet, mediamtx_rtsp=rtsp_base, mediamtx_api=api_url, encoder="libx264", gop=row.gop), encoder_lifespan))
        await stack.enter_async_context(running("capture", CaptureSettings(**quiet), capture_lifespan))
        gateway = await stack.enter_async_context(gateway_lifespan(Runtime("gateway", GatewaySettings(
            **quiet, gateway_addr="127.0.0.1:0", gateway_api_key=API_KEY, mediamtx_api=api_url,
            public_whep_base=whep_base, public_hls_base=hls_base), "gateway-bench")))
        await bus.request(subjects.STREAM_START, StartStream(
            stream_id=stream_id, source=TestPatternSource(), format=VideoFormat(width=width, height=height, fps=FPS),
        ), Accepted, service="capture", timeout=10)
        await wait_for_state(await StateStore.open(bus, "bench"), stream_id, StreamState.PUBLISHING, timeout=30)
        if real is not None:  # as a viewer would: the player is opened once the stream is live
            await wait_for_state(await StateStore.open(bus, "bench"), stream_id, StreamState.LIVE, timeout=30)
        page = await stack.enter_async_context(chromium_page(width=1400, height=900))
        via = "&via=hls" if row.via == "hls" else ""
        await page.goto(f"{gateway.url}/watch.html?stream={stream_id}&key={API_KEY}{via}")
        await wait_playing(page, row.via, samples=1)
        inbound = await _inbound_bytes(bus, api_url, stream_id) if real is not None else None
        began = time.monotonic()
        await asyncio.sleep(window_s)  # the window being measured: plain playback
        stats = await page.evaluate("window.framecastStats")
        ingest_kbps = float("nan")
        if inbound is not None:
            after = await _inbound_bytes(bus, api_url, stream_id)
            if after is not None:
                ingest_kbps = (after - inbound) * 8 / 1000 / (time.monotonic() - began)
    g2g = stats.get("glassToGlass") or {}
    return {
        "size": f"{width}x{height}", "fps": FPS, "video": "encoder, forwarded" if row.forwarded else "aiortc in-process",
        "server": row.server, "via": row.via, "hls_variant": row.hls_variant if row.via == "hls" else None,
        "p50_ms": g2g.get("p50Ms", float("nan")), "p95_ms": g2g.get("p95Ms", float("nan")),
        "samples": g2g.get("samples", 0), "fps_shown": stats.get("fps"), "bitrate_kbps": stats.get("bitrateKbps"),
        "ingest_kbps": ingest_kbps, "first_picture_ms": stats.get("startupMs"), "gop": row.gop,
        "window_s": window_s,
    }


async def _inbound_bytes(bus: Any, api_url: str, stream_id: str) -> int | None:
    """Bytes MediaMTX has received on the path (its control API, with a service token); None if unreadable."""
    from framecast.proto import subjects
    from framecast.proto.messages import TokenIssued, TokenRequest
    from framecast.runtime.mediamtx_api import MediaMTXClient

    issued = await bus.request(subjects.AUTH_TOKEN_ISSUE, TokenRequest(role="service"), TokenIssued,
                               service="auth", timeout=10)
    try:
        async with MediaMTXClient(api_url, lambda: issued.token) as client:
            return (await client.get_path(stream_id)).inboundBytes
    except Exception:  # noqa: BLE001 - a figure left out, not a failed row
        return None


async def _run_all(options: Options) -> list[dict[str, Any]]:
    from framecast.devstack.nats import NatsServer
    from tests.support.real_mediamtx import BINARY

    window_s = QUICK_WINDOW_S if options.quick else WINDOW_S
    repeat = options.repeat or (1 if options.quick else DEFAULT_REPEAT)
    server = await NatsServer().start()
    runs: list[list[dict[str, Any]]] = [[] for _ in ROWS]
    errors: dict[int, str] = {}
    results = []
    try:
        for _ in range(repeat):  # rows interleaved: a slow minute of the machine hits all of them
            for row, spec in enumerate(ROWS):
                label, (width, height) = spec.label, spec.size
                if row in errors or (options.quick and not spec.quick):
                    continue
                if spec.server == "mediamtx" and BINARY is None:
                    errors[row] = SKIPPED
                    continue
                try:
                    runs[row].append(await measure(server.url, spec, window_s))
                except Exception as exc:  # a failed row is reported, the others still run
                    errors[row] = f"{type(exc).__name__}: {exc}"
                    options.progress(f"glass {label} {width}x{height}: {errors[row]}")
                    continue
                last = runs[row][-1]
                options.progress(f"glass {label} {width}x{height}: p50 {last['p50_ms']} ms, "
                                 f"p95 {last['p95_ms']} ms, {last['samples']} samples, "
                                 f"first picture {last['first_picture_ms']} ms")
        for row, spec in enumerate(ROWS):
            label, (width, height) = spec.label, spec.size
            if not runs[row] and row not in errors:
                continue  # not in a --quick run
            if row in errors:
                results.append({"label": label, "size": f"{width}x{height}", "fps": FPS, "error": errors[row]})
                continue
            p50s = [r["p50_ms"] for r in runs[row]]
            results.append({
                "label": label, "size": runs[row][0]["size"], "fps": FPS, "video": runs[row][0]["video"],
                "p50_ms": report.median(p50s), "p95_ms": report.median([r["p95_ms"] for r in runs[row]]),
                "p50_min_ms": min(p50s), "p50_max_ms": max(p50s),
                "bitrate_kbps": report.median([r["bitrate_kbps"] or float("nan") for r in runs[row]]),
                "ingest_kbps": report.median([r["ingest_kbps"] for r in runs[row]]),
                "gop": runs[row][0]["gop"],
                "first_picture_ms": report.median([r["first_picture_ms"] or float("nan") for r in runs[row]]),
                "runs": runs[row],
            })
    finally:
        await server.stop()
    return results


def run(options: Options) -> dict[str, Any]:
    from tests.support.browser import CHROMIUM

    if not CHROMIUM.exists():  # every row needs the browser: the group skips, the others still run
        reason = f"no Debian chromium at {CHROMIUM} (sudo apt-get install -y chromium)"
        return {"group": "glass", "skipped": reason, "results": [], "table": f"glass skipped: {reason}"}
    results = asyncio.run(_run_all(options))
    floor = next((r for r in results if r["label"].startswith("floor") and "error" not in r), None)
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["label"], f"{r['size']}@{r['fps']}", *["n/a"] * 8])
            continue
        ratio = r["p50_ms"] / floor["p50_ms"] if floor and floor["p50_ms"] else float("nan")
        rows.append([r["label"], f"{r['size']}@{r['fps']}", r["p50_ms"], r["p95_ms"], ratio,
                     f"{r['p50_min_ms']}-{r['p50_max_ms']}", r["first_picture_ms"], len(r["runs"]),
                     r["bitrate_kbps"], r["ingest_kbps"]])
    text = report.table(
        ["video", "stream", "p50 ms", "p95 ms", "p50 / floor", "p50 range", "first picture ms", "runs",
         "kbit/s", "ingest kbit/s"],
        rows,
        title="glass-to-glass in Chromium by WebRTC (HLS where named): capture stamp to the browser displaying "
              "the frame (the player's own meter)",
    )
    text += "".join(f"\n{r['label']} {r['size']} " + (r["error"] if r["error"] == SKIPPED else f"failed: {r['error']}")
                    for r in results if "error" in r)
    text += ("\n(medians over runs; framecast: capture test pattern -> shm -> encoder libx264 -> RTSP -> WHEP "
             "forwarder -> Chromium (GOP 1 s unless named); floor: the same page and meter, video encoded by aiortc "
             "inside the WHEP peer. First picture: the player's wait from asking for a token to the first frame. "
             "The forwarder's RTSP demuxer (libavformat) holds each frame until the next starts: about one frame "
             "interval of framecast's figure is the stand-in's, which MediaMTX does not add. MediaMTX rows: the real "
             "binary with framecast's config, the player opened once the stream is live; kbit/s: the player's "
             "received bitrate; ingest kbit/s: MediaMTX's inboundBytes over the window)")
    return {
        "group": "glass",
        "settings": {"fps": FPS, "window_s": QUICK_WINDOW_S if options.quick else WINDOW_S,
                     "repeat": options.repeat or (1 if options.quick else DEFAULT_REPEAT),
                     "browser": "Debian chromium, headless", "encoder": "libx264"},
        "results": results,
        "table": text,
    }

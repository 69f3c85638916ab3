"""Benchmark 5: glass-to-glass latency in a real browser, the figure the product is judged by.

framecast's real services run in this process (auth, encoder with libx264, capture's test
pattern, gateway), the gateway's own player page plays the stream in Debian's Chromium by
WebRTC, and the player's latency meter reads the wall-clock stamp from each presented frame's
pixels (display time - stamp; p50/p95 over its last 10 s window, as the stats overlay shows).
MediaMTX's part is tests.support.whep_bridge: RTSP ingest, H.264 forwarded untouched to WHEP.

Side by side, the same page, stack and meter with the bridge's viewers sent a pattern that
aiortc encodes in-process instead of the encoder's video: a WebRTC sender with nothing in front
of it. The ratio says what framecast's path (ring, pump, FFmpeg x264, RTSP, forwarding) adds.
"""

from __future__ import annotations

import asyncio
import secrets
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from . import report
from .options import Options

FPS = 30
ROWS = (  # label, size, viewers get the encoder's video (True) or aiortc's own pattern, GOP (0: 1 s)
    ("framecast", (640, 360), True, 0),
    ("framecast", (1280, 720), True, 0),
    ("framecast, GOP 1/3 s", (640, 360), True, FPS // 3),
    ("floor: aiortc encodes in-process", (640, 360), False, 0),
)
WINDOW_S = 12.0  # the meter's window is 10 s: every sample comes from steady playback
QUICK_WINDOW_S = 4.0
DEFAULT_REPEAT = 5  # a run's p50 moves by tens of ms with the phase of capture, encoder and display
API_KEY = "bench-glass-" + secrets.token_hex(8)


async def measure(nats_url: str, width: int, height: int, forwarded: bool, gop: int,
                  window_s: float) -> dict[str, Any]:
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
    from tests.support.rtsp import free_port
    from tests.support.services import running, wait_for_state
    from tests.support.whep_bridge import WhepBridge

    stream_id = f"bench-glass-{width}-{secrets.token_hex(3)}"
    auth_addr = f"127.0.0.1:{free_port()}"
    quiet = {"nats_url": nats_url, "log_level": "warning"}
    async with AsyncExitStack() as stack:
        keys = stack.enter_context(tempfile.TemporaryDirectory(prefix="framecast-bench-keys-"))
        await stack.enter_async_context(running("auth", AuthSettings(
            **quiet, auth_addr=auth_addr, auth_key_dir=str(Path(keys))), auth_lifespan))
        bridge = await stack.enter_async_context(WhepBridge(
            stream_id, hook_url=f"http://{auth_addr}/mediamtx/auth",
            local_pattern=None if forwarded else (width, height)))
        mediamtx = await stack.enter_async_context(FakeMediaMTX())
        await stack.enter_async_context(running("encoder", EncoderSettings(
            **quiet, mediamtx_rtsp=bridge.rtsp_base, encoder="libx264", gop=gop), encoder_lifespan))
        await stack.enter_async_context(running("capture", CaptureSettings(**quiet), capture_lifespan))
        gateway = await stack.enter_async_context(gateway_lifespan(Runtime("gateway", GatewaySettings(
            **quiet, gateway_addr="127.0.0.1:0", gateway_api_key=API_KEY, mediamtx_api=mediamtx.url,
            public_whep_base=bridge.whep_base), "gateway-bench")))
        bus = await Bus.connect(nats_url, client_id="bench-glass")
        stack.push_async_callback(bus.close)
        await bus.request(subjects.STREAM_START, StartStream(
            stream_id=stream_id, source=TestPatternSource(), format=VideoFormat(width=width, height=height, fps=FPS),
        ), Accepted, service="capture", timeout=10)
        await wait_for_state(await StateStore.open(bus, "bench"), stream_id, StreamState.PUBLISHING, timeout=30)
        page = await stack.enter_async_context(chromium_page(width=1400, height=900))
        await page.goto(f"{gateway.url}/watch.html?stream={stream_id}&key={API_KEY}")
        await wait_playing(page, "whep", samples=1)
        await asyncio.sleep(window_s)  # the window being measured: plain playback
        stats = await page.evaluate("window.framecastStats")
    g2g = stats.get("glassToGlass") or {}
    return {
        "size": f"{width}x{height}", "fps": FPS, "video": "encoder, forwarded" if forwarded else "aiortc in-process",
        "p50_ms": g2g.get("p50Ms", float("nan")), "p95_ms": g2g.get("p95Ms", float("nan")),
        "samples": g2g.get("samples", 0), "fps_shown": stats.get("fps"), "bitrate_kbps": stats.get("bitrateKbps"),
        "first_picture_ms": stats.get("startupMs"), "gop": gop or FPS,
        "window_s": window_s,
    }


async def _run_all(options: Options) -> list[dict[str, Any]]:
    from framecast.devstack.nats import NatsServer
    from tests.support.browser import CHROMIUM

    if not CHROMIUM.exists():
        raise SystemExit(f"glass needs Debian's chromium at {CHROMIUM}: sudo apt-get install -y chromium")
    window_s = QUICK_WINDOW_S if options.quick else WINDOW_S
    repeat = options.repeat or (1 if options.quick else DEFAULT_REPEAT)
    server = await NatsServer().start()
    runs: list[list[dict[str, Any]]] = [[] for _ in ROWS]
    errors: dict[int, str] = {}
    results = []
    try:
        for _ in range(repeat):  # rows interleaved: a slow minute of the machine hits all of them
            for row, (label, (width, height), forwarded, gop) in enumerate(ROWS):
                if row in errors:
                    continue
                try:
                    runs[row].append(await measure(server.url, width, height, forwarded, gop, window_s))
                except Exception as exc:  # a failed row is reported, the others still run
                    errors[row] = f"{type(exc).__name__}: {exc}"
                    options.progress(f"glass {label} {width}x{height}: {errors[row]}")
                    continue
                last = runs[row][-1]
                options.progress(f"glass {label} {width}x{height}: p50 {last['p50_ms']} ms, "
                                 f"p95 {last['p95_ms']} ms, {last['samples']} samples, "
                                 f"first picture {last['first_picture_ms']} ms")
        for row, (label, (width, height), _, _) in enumerate(ROWS):
            if row in errors:
                results.append({"label": label, "size": f"{width}x{height}", "fps": FPS, "error": errors[row]})
                continue
            p50s = [r["p50_ms"] for r in runs[row]]
            results.append({
                "label": label, "size": runs[row][0]["size"], "fps": FPS, "video": runs[row][0]["video"],
                "p50_ms": report.median(p50s), "p95_ms": report.median([r["p95_ms"] for r in runs[row]]),
                "p50_min_ms": min(p50s), "p50_max_ms": max(p50s),
                "bitrate_kbps": report.median([r["bitrate_kbps"] or float("nan") for r in runs[row]]),
                "first_picture_ms": report.median([r["first_picture_ms"] or float("nan") for r in runs[row]]),
                "runs": runs[row],
            })
    finally:
        await server.stop()
    return results


def run(options: Options) -> dict[str, Any]:
    results = asyncio.run(_run_all(options))
    floor = next((r for r in results if r["label"].startswith("floor") and "error" not in r), None)
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["label"], f"{r['size']}@{r['fps']}", *["n/a"] * 7])
            continue
        ratio = r["p50_ms"] / floor["p50_ms"] if floor and floor["p50_ms"] else float("nan")
        rows.append([r["label"], f"{r['size']}@{r['fps']}", r["p50_ms"], r["p95_ms"], ratio,
                     f"{r['p50_min_ms']}-{r['p50_max_ms']}", r["first_picture_ms"], len(r["runs"]),
                     r["bitrate_kbps"]])
    text = report.table(
        ["video", "stream", "p50 ms", "p95 ms", "p50 / floor", "p50 range", "first picture ms", "runs",
         "kbit/s"],
        rows,
        title="glass-to-glass in Chromium by WebRTC: capture stamp to the browser displaying the frame "
              "(the player's own meter)",
    )
    text += "".join(f"\n{r['label']} {r['size']} failed: {r['error']}" for r in results if "error" in r)
    text += ("\n(medians over runs; framecast: capture test pattern -> shm -> encoder libx264 -> RTSP -> WHEP "
             "forwarder -> Chromium (GOP 1 s unless named); floor: the same page and meter, video encoded by aiortc "
             "inside the WHEP peer. First picture: the player's wait from asking for a token to the first frame. "
             "The forwarder's RTSP demuxer (libavformat) holds each frame until the next starts: about one frame "
             "interval of framecast's figure is the stand-in's, which MediaMTX does not add)")
    return {
        "group": "glass",
        "settings": {"fps": FPS, "window_s": QUICK_WINDOW_S if options.quick else WINDOW_S,
                     "repeat": options.repeat or (1 if options.quick else DEFAULT_REPEAT),
                     "browser": "Debian chromium, headless", "encoder": "libx264"},
        "results": results,
        "table": text,
    }

"""The whole product in a real browser: a test pattern from capture, encoded by the encoder,
published over RTSP, watched through the gateway's player by WebRTC, latency read from pixels.

MediaMTX's part (RTSP ingest, WHEP egress, asking the auth hook about each viewer) is played by
tests.support.whep_bridge, which forwards the encoder's H.264 untouched, and - wherever a binary
is present - by a real MediaMTX too, which also serves the HLS fallback. Everything else is
framecast's real services. The latency asserted here is only a sanity bound: the figures live
in ``python -m bench glass`` and docs/performance.md. With FRAMECAST_DOCS_SCREENSHOT=1 the test
also refreshes docs/player.png, the README's picture of the player.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricsData

from framecast.auth import AuthSettings
from framecast.auth import lifespan as auth_lifespan
from framecast.capture.service import lifespan as capture_lifespan
from framecast.capture.settings import CaptureSettings
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.frames.pattern import TestPattern
from framecast.gateway.service import lifespan as gateway_lifespan
from framecast.gateway.settings import GatewaySettings
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import Accepted, StartStream, TestPatternSource, VideoFormat
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from framecast.runtime.lifecycle import Runtime
from tests.support.browser import assert_video_moves, chromium_page, needs_chromium, wait_playing
from tests.support.fake_mediamtx import FakeMediaMTX
from tests.support.real_mediamtx import needs_mediamtx, real_mediamtx
from tests.support.rtsp import free_port
from tests.support.services import running, wait_for_state
from tests.support.whep_bridge import WhepBridge

pytestmark = needs_chromium

API_KEY = "glass-to-glass-key-0123456789"

#: Five presented frames, ten frames apart: their pixels (RGB, base64) and the stamp in them.
GRAB_FRAMES = """async (count) => {
  const { decodeStamp } = await import('/pattern.js');
  const video = document.getElementById('video');
  const canvas = Object.assign(document.createElement('canvas'),
                               {width: video.videoWidth, height: video.videoHeight});
  const context = canvas.getContext('2d', {willReadFrequently: true});
  const pictures = [];
  for (let i = 0; i < count; i += 1) {
    for (let k = 0; k < 10; k += 1) await new Promise((r) => video.requestVideoFrameCallback(r));
    context.drawImage(video, 0, 0);
    const rgba = context.getImageData(0, 0, canvas.width, canvas.height);
    const rgb = new Uint8Array(canvas.width * canvas.height * 3);
    for (let p = 0, q = 0; p < rgba.data.length; p += 4, q += 3) rgb.set(rgba.data.subarray(p, p + 3), q);
    let binary = '';
    for (let j = 0; j < rgb.length; j += 0x8000) binary += String.fromCharCode(...rgb.subarray(j, j + 0x8000));
    pictures.push({stamp: decodeStamp(rgba), rgb: btoa(binary)});
  }
  return pictures;
}"""


def value(data: MetricsData | None, name: str, **attributes: str) -> float:
    """The sum of ``name``'s data points whose attributes include ``attributes`` (0: none)."""
    if data is None:  # nothing recorded in this process yet
        return 0
    return sum(
        point.value
        for resource in data.resource_metrics for scope in resource.scope_metrics for metric in scope.metrics
        if metric.name == name
        for point in metric.data.data_points
        if attributes.items() <= dict(point.attributes or {}).items()
    )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * math.log10(255**2 / mse) if mse else math.inf


DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "player.png"


@dataclass
class MediaServer:
    """Where the encoder publishes and browsers play, and how "live" becomes known."""

    rtsp_base: str
    whep_base: str
    hls_base: str
    api_url: str
    published: Callable[[], Awaitable[None]]
    """Returns once the server has the stream (and its control API says so)."""


@contextlib.asynccontextmanager
async def bridge_server(stream_id: str, auth_addr: str, _tmp_path: Path) -> AsyncIterator[MediaServer]:
    async with (WhepBridge(stream_id, hook_url=f"http://{auth_addr}/mediamtx/auth") as bridge,
                FakeMediaMTX() as api):
        async def published() -> None:
            await asyncio.wait_for(bridge.published.wait(), 10)
            api.add_path(stream_id)  # the control API now lists the path as ready

        no_hls = f"http://127.0.0.1:{free_port()}"  # the bridge serves WebRTC only
        yield MediaServer(bridge.rtsp_base, bridge.whep_base, no_hls, api.url, published)


@contextlib.asynccontextmanager
async def mediamtx_server(_stream_id: str, auth_addr: str, tmp_path: Path) -> AsyncIterator[MediaServer]:
    async with real_mediamtx(tmp_path, auth_addr) as server:
        async def published() -> None:
            pass  # MediaMTX's own API reports the path: the reconciler sees it

        yield MediaServer(server.rtsp, server.whep, server.hls, server.api, published)


@pytest.mark.parametrize("media", [
    pytest.param(bridge_server, id="whep-bridge"),
    pytest.param(mediamtx_server, id="real-mediamtx", marks=needs_mediamtx),
])
async def test_test_pattern_plays_in_the_browser_by_whep_with_its_latency(
    nats_server: NatsServer, bus: Bus, stream_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    metric_reader: InMemoryMetricReader, media: Callable[..., contextlib.AbstractAsyncContextManager[MediaServer]],
) -> None:
    pytest.importorskip("aiortc", reason="aiortc is not installed")
    caplog.set_level("DEBUG", logger="framecast")
    caplog.set_level("INFO")
    store = await StateStore.open(bus, "test")
    auth_addr = f"127.0.0.1:{free_port()}"
    before = metric_reader.get_metrics_data()
    async with (
        running("auth", AuthSettings(nats_url=nats_server.url, auth_addr=auth_addr,
                                     auth_key_dir=str(tmp_path / "keys")), auth_lifespan),
        media(stream_id, auth_addr, tmp_path) as server,
        running("encoder", EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=server.rtsp_base),
                encoder_lifespan),
        running("capture", CaptureSettings(nats_url=nats_server.url), capture_lifespan),
        gateway_lifespan(Runtime("gateway", GatewaySettings(
            nats_url=nats_server.url, gateway_addr="127.0.0.1:0", gateway_api_key=API_KEY,
            mediamtx_api=server.api_url, public_whep_base=server.whep_base, public_hls_base=server.hls_base,
        ), "gateway-1")) as gateway,
    ):
        await bus.request(subjects.STREAM_START, StartStream(
            stream_id=stream_id, source=TestPatternSource(), format=VideoFormat(width=640, height=360, fps=30),
        ), Accepted, service="capture", timeout=10)
        await wait_for_state(store, stream_id, StreamState.PUBLISHING, timeout=30)
        await server.published()
        await wait_for_state(store, stream_id, StreamState.LIVE)

        async with chromium_page() as page:
            await page.goto(f"{gateway.url}/watch.html?stream={stream_id}&key={API_KEY}")
            stats = await wait_playing(page, "whep", samples=60)
            await assert_video_moves(page)
            pictures = await page.evaluate(GRAB_FRAMES, 5)
            await page.get_by_role("button", name="Statistics overlay").click()
            await page.wait_for_function("window.framecastStats.bitrateKbps > 0", timeout=10_000)
            await page.screenshot(path=tmp_path / "player.png")
            recorded = metric_reader.get_metrics_data()  # while the page plays and the stream is open
            if media is mediamtx_server:  # a real MediaMTX serves HLS too: the fallback must play
                await page.goto(f"{gateway.url}/watch.html?stream={stream_id}&key={API_KEY}&via=hls")
                await wait_playing(page, "hls", samples=5)
                await assert_video_moves(page)

    # every picture is the frame capture rendered, intact: no lost packets, no smearing
    pattern = TestPattern(640, 360)
    for picture in pictures:
        assert picture["stamp"] is not None, "a frame without a readable stamp"
        shown = np.frombuffer(base64.b64decode(picture["rgb"]), np.uint8).reshape(360, 640, 3)
        sent = pattern.render(picture["stamp"]["frameNo"], picture["stamp"]["ms"])[..., ::-1]
        assert psnr(shown, sent) > 25, (picture["stamp"], psnr(shown, sent))  # intact: ~29 dB
    g2g = stats["glassToGlass"]
    assert 0 < g2g["p50Ms"] <= g2g["p95Ms"] < 1_000, g2g  # WebRTC is real time, not seconds behind
    assert g2g["frameNo"] > 0
    assert 0 < stats["startupMs"] < 10_000, stats  # shown to the viewer as "First picture"
    # publish and viewer tokens, and the API key in the page's address, reach no log line
    assert "eyJ" not in caplog.text and API_KEY not in caplog.text
    # MediaMTX asked the auth hook about the viewer, which the token the gateway handed out
    # allowed; and each service's own metrics saw this viewer and this stream
    def more(name: str, **attributes: str) -> float:
        return value(recorded, name, **attributes) - value(before, name, **attributes)

    assert more("framecast.auth.decisions", action="read", protocol="webrtc", decision="allow", reason="ok") >= 1
    assert more("framecast.auth.decisions", action="read", decision="deny") == 0
    assert more("framecast.auth.tokens", role="publisher", outcome="issued") >= 1
    assert more("framecast.auth.tokens", role="viewer", outcome="issued") >= 1
    assert more("framecast.gateway.playbacks") >= 1
    assert value(recorded, "framecast.gateway.streams", state="live") >= 1
    assert value(recorded, "framecast.gateway.event_streams") >= 1  # the page follows the events
    assert value(recorded, "framecast.capture.frames", **{"stream.id": stream_id}) > 60
    if os.environ.get("FRAMECAST_DOCS_SCREENSHOT"):
        shutil.copyfile(tmp_path / "player.png", DOCS_SCREENSHOT)

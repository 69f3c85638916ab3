"""The whole product in a real browser: a test pattern from capture, encoded by the encoder,
published over RTSP, watched through the gateway's player by WebRTC, latency read from pixels.

MediaMTX's part (RTSP ingest, WHEP egress, asking the auth hook about each viewer) is played by
tests.support.whep_bridge, which forwards the encoder's H.264 untouched; everything else is
framecast's real services. The latency asserted here is only a sanity bound: the figures live
in ``python -m bench glass`` and docs/performance.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from framecast.auth.service import AuthSettings
from framecast.auth.service import lifespan as auth_lifespan
from framecast.capture.service import CaptureSettings
from framecast.capture.service import lifespan as capture_lifespan
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import EncoderSettings
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.gateway.service import lifespan as gateway_lifespan
from framecast.gateway.settings import GatewaySettings
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import Accepted, StartStream, TestPatternSource, VideoFormat
from framecast.proto.runtime import Runtime
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from tests.support.browser import assert_video_moves, chromium_page, needs_chromium, wait_playing
from tests.support.fake_mediamtx import FakeMediaMTX
from tests.support.rtsp import free_port
from tests.support.services import running, wait_for_state
from tests.support.whep_bridge import WhepBridge

pytestmark = needs_chromium

API_KEY = "glass-to-glass-key-0123456789"


async def test_test_pattern_plays_in_the_browser_by_whep_with_its_latency(
    nats_server: NatsServer, bus: Bus, stream_id: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("aiortc", reason="aiortc is not installed")
    caplog.set_level("DEBUG", logger="framecast")
    caplog.set_level("INFO")
    store = await StateStore.open(bus, "test")
    auth_addr = f"127.0.0.1:{free_port()}"
    async with (
        running("auth", AuthSettings(nats_url=nats_server.url, auth_addr=auth_addr,
                                     auth_key_dir=str(tmp_path / "keys")), auth_lifespan),
        WhepBridge(stream_id, hook_url=f"http://{auth_addr}/mediamtx/auth") as bridge,
        FakeMediaMTX() as mediamtx,
        running("encoder", EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=bridge.rtsp_base),
                encoder_lifespan),
        running("capture", CaptureSettings(nats_url=nats_server.url), capture_lifespan),
        gateway_lifespan(Runtime("gateway", GatewaySettings(
            nats_url=nats_server.url, gateway_addr="127.0.0.1:0", gateway_api_key=API_KEY,
            mediamtx_api=mediamtx.url, public_whep_base=bridge.whep_base,
        ), "gateway-1")) as gateway,
    ):
        await bus.request(subjects.STREAM_START, StartStream(
            stream_id=stream_id, source=TestPatternSource(), format=VideoFormat(width=640, height=360, fps=30),
        ), Accepted, service="capture", timeout=10)
        await wait_for_state(store, stream_id, StreamState.PUBLISHING, timeout=30)

        async with chromium_page() as page:
            await page.goto(f"{gateway.url}/watch.html?stream={stream_id}&key={API_KEY}")
            stats = await wait_playing(page, "whep", samples=60)
            await assert_video_moves(page)

    g2g = stats["glassToGlass"]
    assert 0 < g2g["p50Ms"] <= g2g["p95Ms"] < 1_000, g2g  # WebRTC is real time, not seconds behind
    assert g2g["frameNo"] > 0
    # MediaMTX asked the auth hook about the viewer with the token the gateway handed out
    assert [(c["action"], c["protocol"], c["path"]) for c in bridge.hook_calls] == [
        ("read", "webrtc", stream_id)]
    assert bridge.hook_calls[0]["token"].startswith("eyJ")
    # publish and viewer tokens, and the API key in the page's address, reach no log line
    assert "eyJ" not in caplog.text and API_KEY not in caplog.text

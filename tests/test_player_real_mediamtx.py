"""The gateway and its player against a real MediaMTX, wherever a binary and chromium are present.

One stack for the module: NATS, auth, a real MediaMTX asking auth's hook, the encoder and
capture publishing a test pattern, and the gateway, which takes its control-API token from
auth and confirms ``live`` from MediaMTX's own API. The browser tests play through the
gateway's player page as a viewer would. Elsewhere the gateway's tests stand in for MediaMTX
(services/gateway/tests/test_player_browser.py, tests/test_glass_to_glass.py's bridge).
The restart test is last: it takes MediaMTX away from everything else.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import imageio_ffmpeg
import pytest

from framecast.auth import AuthSettings
from framecast.auth import lifespan as auth_lifespan
from framecast.capture.service import lifespan as capture_lifespan
from framecast.capture.settings import CaptureSettings
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.gateway.service import lifespan as gateway_lifespan
from framecast.gateway.settings import GatewaySettings
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import Accepted, StartStream, TestPatternSource, TokenIssued, TokenRequest, VideoFormat
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from framecast.runtime.lifecycle import Runtime
from tests.support.browser import assert_video_moves, chromium_page, needs_chromium, wait_playing
from tests.support.real_mediamtx import RealMediaMTX, needs_mediamtx, real_mediamtx
from tests.support.rtsp import free_port
from tests.support.services import eventually, running, wait_for_state

pytestmark = [*needs_mediamtx, *needs_chromium]

API_KEY = "real-mediamtx-player-key-0123"
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class Stack:
    mediamtx: RealMediaMTX
    store: StateStore
    bus: Bus
    stream_id: str
    gateway_url: str

    @property
    def watch_url(self) -> str:
        return f"{self.gateway_url}/watch.html?stream={self.stream_id}&key={API_KEY}"

    async def stream(self) -> dict[str, Any]:
        """The stream as the gateway's API shows it to a viewer."""
        async with httpx.AsyncClient(headers={"X-Api-Key": API_KEY}) as client:
            answer = await client.get(f"{self.gateway_url}/api/streams/{self.stream_id}")
        assert answer.status_code == 200, answer.text
        return answer.json()


@pytest.fixture(scope="module")
async def stack(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("player-real-mediamtx")
    bus = await Bus.connect(nats_server.url, client_id="test-player-real-mediamtx")
    store = await StateStore.open(bus, "test")
    stream_id = "player" + os.urandom(4).hex()
    auth_addr = f"127.0.0.1:{free_port()}"
    try:
        async with real_mediamtx(tmp, auth_addr) as server:
            async with (
                running("auth", AuthSettings(nats_url=nats_server.url, auth_addr=auth_addr,
                                             auth_key_dir=str(tmp / "keys"), mediamtx_api=server.api), auth_lifespan),
                running("encoder", EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=server.rtsp, mediamtx_api=server.api),
                        encoder_lifespan),
                running("capture", CaptureSettings(nats_url=nats_server.url), capture_lifespan),
                gateway_lifespan(Runtime("gateway", GatewaySettings(
                    nats_url=nats_server.url, gateway_addr="127.0.0.1:0", gateway_api_key=API_KEY,
                    mediamtx_api=server.api, public_whep_base=server.whep, public_hls_base=server.hls,
                ), "gateway-real")) as gateway,
            ):
                await bus.request(subjects.STREAM_START,
                                  StartStream(stream_id=stream_id, source=TestPatternSource(),
                                              format=VideoFormat(width=320, height=240, fps=30)),
                                  Accepted, service="capture", timeout=10)
                yield Stack(server, store, bus, stream_id, gateway.url)
    finally:
        await bus.close()


async def readers(stack: Stack, count: int, timeout: float = 15) -> dict[str, Any]:
    """The gateway's view of the stream once it counts ``count`` readers (polled: the reconciler
    publishes reader counts in the stream's JSON only, not as events)."""
    view: dict[str, Any] = {}

    async def counted() -> bool:
        nonlocal view
        view = await stack.stream()
        return bool(view["readers"] == count)

    await eventually(counted, f"the gateway counts {count} reader(s)", timeout)
    return view


async def test_the_gateway_confirms_live_from_mediamtx_and_counts_its_readers(stack: Stack) -> None:
    record = await wait_for_state(stack.store, stack.stream_id, StreamState.LIVE, timeout=30)
    assert record.reason.startswith("MediaMTX is serving it (H264") and "reader" in record.reason, record.reason
    await readers(stack, 0)
    issued = await stack.bus.request(subjects.AUTH_TOKEN_ISSUE, TokenRequest(
        role="viewer", stream_id=stack.stream_id, subject="test"), TokenIssued, service="auth")
    reader = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp",
        "-i", f"{stack.mediamtx.rtsp}/{stack.stream_id}?token={issued.token}", "-f", "null", "-",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        view = await readers(stack, 1)
        assert view["state"] == "live"
    finally:
        reader.terminate()
        await reader.wait()
    await readers(stack, 0)


async def test_the_player_falls_back_to_hls_when_webrtc_is_blocked(stack: Stack) -> None:
    await wait_for_state(stack.store, stack.stream_id, StreamState.LIVE, timeout=30)
    async with chromium_page() as page:
        blocked: list[str] = []

        async def block(route: Any) -> None:  # what a proxy that lets no WebRTC through does
            blocked.append(route.request.method)
            await route.abort("blockedbyclient")

        await page.route(f"{stack.mediamtx.whep}/**", block)
        await page.goto(stack.watch_url)
        await wait_playing(page, "hls", samples=5)
        await assert_video_moves(page)
        notice = await page.text_content("#notice")
    assert "POST" in blocked, "the player never tried WebRTC"
    assert notice is not None and "Playing by HLS (WebRTC failed" in notice, notice


async def test_after_a_mediamtx_restart_the_player_plays_again(stack: Stack) -> None:
    await wait_for_state(stack.store, stack.stream_id, StreamState.LIVE, timeout=30)
    async with chromium_page() as page:
        await page.goto(stack.watch_url)
        await wait_playing(page, "whep", samples=5)
        await stack.mediamtx.restart()
        # the player notices that its session is gone, then connects again by itself
        await page.wait_for_function("window.framecastStats?.mode !== 'whep'", timeout=20_000)
        await wait_playing(page, "whep", samples=5)
        await assert_video_moves(page)
    record = await wait_for_state(stack.store, stack.stream_id, StreamState.LIVE)
    assert "MediaMTX is serving it" in record.reason

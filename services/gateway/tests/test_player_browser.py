"""The player pages in a real chromium: WHEP, automatic HLS fallback, reasons, latency stamps.

Two stand-ins serve the browser here. ``StubGateway`` is NOT the gateway: a few canned routes
of the HTTP API the pages are written against (the real app is framecast.gateway's), plus the
static directory. ``MediaOrigin`` plays MediaMTX's part on another origin: a WHEP endpoint
(failing on demand, or answered by an aiortc peer) and an HLS stream that real FFmpeg makes
from framecast.frames.pattern's test pattern, whose timestamp blocks static/pattern.js reads.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import imageio_ffmpeg
import numpy as np
import pytest
import pytest_asyncio
from litestar import Litestar, Request, Response, delete, get, post
from litestar.config.cors import CORSConfig
from litestar.datastructures import Cookie
from litestar.params import FromPath, FromQuery
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.static_files import create_static_files_router

from framecast.frames.pattern import TestPattern, stamp
from tests.support.browser import (
    assert_video_moves,
    chromium_page,
    collect_errors,
    needs_chromium,
    wait_playing,
)
from tests.support.fake_mediamtx import serve_asgi
from tests.support.whep_bridge import stamped_track

pytestmark = [*needs_chromium, pytest.mark.asyncio(loop_scope="module")]

STATIC = Path(str(resources.files("framecast.gateway") / "static"))
WIDTH, HEIGHT, FPS = 640, 360, 30
STREAM = "cam1"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# ----- the stand-ins ---------------------------------------------------------------------------


def stream_record(state: str = "live", reason: str = "") -> dict[str, Any]:
    return {
        "stream_id": STREAM, "state": state, "reason": reason,
        "source": {"kind": "testpattern"},
        "format": {"width": WIDTH, "height": HEIGHT, "fps": FPS, "pix_fmt": "bgr24"},
        "encoder_kind": "libx264",
        "stats": {"fps_out": 30.0, "dropped": 0, "bitrate_kbps": 800.0},
        "readers": 0, "updated_at": time.time(),
    }


class StubGateway:
    """Canned answers of the gateway API for the pages; a stand-in, not the gateway."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.api_key: str | None = None
        self.streams = {STREAM: stream_record()}
        self.whep_url = self.hls_url = ""
        self.token_ttl = 300.0
        self.tokens: list[str] = []
        self.subscribers: list[asyncio.Queue[tuple[str, dict[str, Any]]]] = []
        self.subscribed = asyncio.Event()

    def publish(self, event: str, data: dict[str, Any]) -> None:
        for queue in self.subscribers:
            queue.put_nowait((event, data))

    def app(self) -> Litestar:
        def problem(status: int, title: str, detail: str) -> Response[Any]:
            return Response({"status": status, "title": title, "detail": detail}, status_code=status,
                            media_type="application/problem+json")

        def check_key(request: Request[Any, Any, Any]) -> Response[Any] | None:
            if self.api_key is None or not request.url.path.startswith("/api/"):
                return None
            given = request.headers.get("authorization", "").removeprefix("Bearer ")
            return None if given == self.api_key else problem(401, "Unauthorized", "API key needed")

        @get("/api/streams", sync_to_thread=False)
        def streams() -> list[dict[str, Any]]:
            return list(self.streams.values())

        @get("/api/streams/{stream_id:str}", sync_to_thread=False)
        def one(stream_id: FromPath[str]) -> Response[Any]:
            if stream_id not in self.streams:
                return problem(404, "Not Found", f"no stream {stream_id!r}")
            return Response(self.streams[stream_id])

        @post("/api/streams/{stream_id:str}/playback", sync_to_thread=False, status_code=200)
        def playback(stream_id: FromPath[str]) -> dict[str, Any]:
            self.tokens.append(f"viewer-token-{len(self.tokens) + 1}")
            return {"whep_url": self.whep_url, "hls_url": self.hls_url, "token": self.tokens[-1],
                    "expires_at": time.time() + self.token_ttl, "expires_in": self.token_ttl}

        @get("/api/events")
        async def events(stream: FromQuery[str | None] = None) -> ServerSentEvent:
            """Every event published from now on (the stub has one stream: ``stream`` is moot)."""
            queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
            subscribers = self.subscribers  # reset() replaces the list; leave from this one
            subscribers.append(queue)
            self.subscribed.set()

            async def messages() -> AsyncIterator[ServerSentEventMessage]:
                sequence = 0
                try:
                    while True:
                        event, data = await queue.get()
                        sequence += 1
                        yield ServerSentEventMessage(event=event, data=json.dumps(data), id=sequence)
                finally:
                    subscribers.remove(queue)

            return ServerSentEvent(messages())

        @get("/test/blank", media_type="text/html", sync_to_thread=False)
        def blank() -> str:
            return '<!doctype html><title>blank</title><link rel="icon" href="data:,">'

        return Litestar(
            [streams, one, playback, events, blank,
             create_static_files_router(path="/", directories=[STATIC], html_mode=True)],
            before_request=check_key, openapi_config=None, logging_config=None,
        )


class MediaOrigin:
    """MediaMTX's WHEP (:8889) and HLS (:8888) sides on one origin, with MediaMTX's CORS.

    HLS follows MediaMTX >= 1.18 (shared/MEDIAMTX.md §1.6, §4.2; ``internal/servers/hls/
    http_server.go``): ``index.m3u8`` redirects to add ``cookieCheck=1``, that request alone is
    authenticated and opens a session, and every later playlist and segment needs the session's
    secret from the same IP. Differences: FFmpeg's fMP4 HLS instead of LL-HLS parts, and no
    pause after a refused request.
    """

    def __init__(self, hls_dir: Path) -> None:
        self.hls_dir = hls_dir
        self.reset()

    def reset(self) -> None:
        self.whep: int | str = 404  # a status to fail with, or "aiortc"
        self.offers: list[dict[str, str]] = []
        self.deletes = 0
        self.hls_sessions: dict[str, str] = {}  # secret -> the client IP that opened it
        self.hls_opened: list[dict[str, str]] = []  # how each session was authenticated
        self.hls_children: list[dict[str, str]] = []  # requests after the session was opened
        self.peers: list[Any] = []
        self.activity = asyncio.Event()

    async def until(self, condition: Callable[[], bool], timeout: float = 20) -> None:
        """Return once ``condition()`` holds, checking after each request this origin serves."""
        async with asyncio.timeout(timeout):
            while not condition():
                self.activity.clear()
                await self.activity.wait()

    def hls_index(self, request: Request[Any, Any, Any], query: dict[str, list[str]]) -> Response[Any]:
        """``index.m3u8`` as MediaMTX >= 1.18 answers it: a redirect adding ``cookieCheck=1``
        (no auth), then the one authenticated request, which opens a session whose secret every
        later URI carries (a cookie only where the browser sent ``cookieCheck`` back)."""
        if query.get("cookieCheck") != ["1"]:
            query["cookieCheck"] = ["1"]
            location = f"/{STREAM}/index.m3u8?{urlencode(sorted(query.items()), doseq=True)}"
            return Response(b"", status_code=302, headers={"Location": location},
                            cookies=[Cookie(key="cookieCheck", value="1")])
        del query["cookieCheck"]
        # the hook's view in authMethod http: the Bearer token, else the raw query's ?token=
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        token = bearer or query.get("token", [""])[0]
        if not token.startswith("viewer-token-"):
            return hls_error(401, "authentication error")
        self.hls_opened.append({"token": token, "via": "header" if bearer else "query"})
        secret = str(uuid.uuid4())
        self.hls_sessions[secret] = client_ip(request)
        cookies = []
        if request.cookies.get("cookieCheck") == "1":
            cookies.append(Cookie(key="hlsSession", value=secret))
        else:
            query["session"] = [secret]
        child = f"video1_stream.m3u8?{urlencode(sorted(query.items()), doseq=True)}"
        playlist = (
            "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n\n"
            f'#EXT-X-STREAM-INF:BANDWIDTH=1000000,CODECS="avc1.42c01e",'
            f"RESOLUTION={WIDTH}x{HEIGHT},FRAME-RATE={FPS}.000\n{child}\n"
        )
        return Response(playlist, media_type="application/vnd.apple.mpegurl", cookies=cookies,
                        headers={"Cache-Control": "private, no-cache"})

    def kick_hls_sessions(self) -> None:
        """End every HLS session, as ``/v3/hlssessions/kick`` or 30 s without requests does."""
        self.hls_sessions.clear()

    async def close_peers(self) -> None:
        for pc in self.peers:
            await pc.close()

    def app(self) -> Litestar:
        @post(f"/{STREAM}/whep", status_code=201)
        async def whep(request: Request[Any, Any, Any]) -> Response[Any]:
            offer = (await request.body()).decode()
            self.activity.set()
            self.offers.append({"authorization": request.headers.get("authorization", ""),
                                "content_type": request.headers.get("content-type", "")})
            if self.whep != "aiortc":
                error = f"no stream is available on path '{STREAM}'"
                return Response({"status": "error", "error": error}, status_code=int(self.whep))
            answer = await self.answer(offer)
            secret = uuid.uuid4()
            return Response(answer, status_code=201, media_type="application/sdp",
                            headers={"Location": f"/{STREAM}/whep/{secret}", "ID": str(uuid.uuid4())})

        @delete(f"/{STREAM}/whep/{{secret:str}}", status_code=200)
        async def whep_delete(secret: FromPath[str]) -> dict[str, str]:
            self.deletes += 1
            self.activity.set()
            return {"status": "ok"}

        @get(f"/{STREAM}/{{name:str}}", sync_to_thread=False)
        def hls(name: FromPath[str], request: Request[Any, Any, Any]) -> Response[Any]:
            self.activity.set()
            query = parse_qs(request.url.query, keep_blank_values=True)
            if name == "index.m3u8":
                return self.hls_index(request, query)
            if not name.endswith((".m3u8", ".mp4")):
                return Response(b"", status_code=404)
            self.hls_children.append(
                {"name": name, "authorization": request.headers.get("authorization", "")})
            secret = request.cookies.get("hlsSession") or query.get("session", [""])[0]
            if self.hls_sessions.get(secret) != client_ip(request):
                return hls_error(401, "authentication error")
            if name.endswith(".m3u8"):  # video1_stream.m3u8: FFmpeg's media playlist
                child_query = urlencode(sorted(
                    (k, v) for k, v in query.items() if not k.startswith("_HLS_")), doseq=True)
                body = with_query((self.hls_dir / "index.m3u8").read_text(), child_query)
                return Response(body, media_type="application/vnd.apple.mpegurl",
                                headers={"Cache-Control": "private, no-cache"})
            path = self.hls_dir / name
            if not path.is_file():
                return hls_error(404, "segment not found")
            return Response(path.read_bytes(), media_type="video/mp4",
                            headers={"Cache-Control": "private, no-cache"})

        cors = CORSConfig(
            allow_origins=["*"], allow_methods=["OPTIONS", "GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match", "Range"],
            expose_headers=["ETag", "ID", "Accept-Patch", "Link", "Location"],
        )
        return Litestar(
            [whep, whep_delete, hls], cors_config=cors, openapi_config=None, logging_config=None
        )

    async def answer(self, offer: str) -> str:
        """Answer a browser's offer with an aiortc peer sending stamped frames (H.264 via x264)."""
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.peers.append(pc)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        pc.addTrack(stamped_track(WIDTH, HEIGHT))
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp


def client_ip(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else ""


def hls_error(status: int, error: str) -> Response[Any]:
    return Response({"status": "error", "error": error}, status_code=status)


def with_query(playlist: str, query: str) -> str:
    """Append ``?query`` to every URI of a media playlist, as gohlslib does for a session."""
    lines = []
    for line in playlist.splitlines():
        if line.startswith("#EXT-X-MAP:URI="):
            uri = line.removeprefix("#EXT-X-MAP:URI=").strip('"')
            line = f'#EXT-X-MAP:URI="{uri}?{query}"'
        elif line and not line.startswith("#"):
            line = f"{line}?{query}"
        lines.append(line)
    return "\n".join(lines) + "\n"


# ----- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hls_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A live fMP4 HLS stream that FFmpeg keeps writing from stamped frames, fed in real time."""
    out = tmp_path_factory.mktemp("hls")
    ffmpeg = subprocess.Popen(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error",
         "-f", "rawvideo", "-pix_fmt", "bgr24", "-s", f"{WIDTH}x{HEIGHT}", "-r", str(FPS),
         "-i", "pipe:0",
         "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-profile:v", "baseline",
         "-pix_fmt", "yuv420p", "-g", str(FPS), "-keyint_min", str(FPS), "-sc_threshold", "0",
         "-f", "hls", "-hls_time", "1", "-hls_list_size", "5", "-hls_segment_type", "fmp4",
         "-hls_flags", "delete_segments+independent_segments",
         "-hls_fmp4_init_filename", "init.mp4",
         "-hls_segment_filename", str(out / "seg%05d.mp4"), str(out / "index.m3u8")],
        stdin=subprocess.PIPE,
    )
    stop = threading.Event()

    def feed() -> None:
        assert ffmpeg.stdin is not None
        pattern = TestPattern(WIDTH, HEIGHT)
        start = time.monotonic()
        frame_no = 0
        while not stop.is_set():
            ffmpeg.stdin.write(pattern.render(frame_no, now_ms()).data)
            frame_no += 1
            stop.wait(max(0.0, start + frame_no / FPS - time.monotonic()))  # real-time pacing

    feeder = threading.Thread(target=feed, name="hls-feed", daemon=True)
    feeder.start()
    yield out
    stop.set()
    feeder.join()
    assert ffmpeg.stdin is not None
    ffmpeg.stdin.close()
    ffmpeg.wait(timeout=10)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def origins(hls_dir: Path) -> AsyncIterator[tuple[StubGateway, str, MediaOrigin, str]]:
    gateway, media = StubGateway(), MediaOrigin(hls_dir)
    async with serve_asgi(gateway.app()) as gateway_url, serve_asgi(media.app()) as media_url:
        yield gateway, gateway_url, media, media_url
        await media.close_peers()


@pytest_asyncio.fixture(loop_scope="module")
async def stub(origins: tuple[StubGateway, str, MediaOrigin, str]) -> StubGateway:
    """The gateway stand-in, reset, pointing the player at the media origin."""
    gateway, _, media, media_url = origins
    gateway.reset()
    media.reset()
    gateway.whep_url = f"{media_url}/{STREAM}/whep"
    gateway.hls_url = f"{media_url}/{STREAM}/index.m3u8"
    return gateway


@pytest.fixture
def gateway_url(origins: tuple[StubGateway, str, MediaOrigin, str]) -> str:
    return origins[1]


@pytest.fixture
def media(origins: tuple[StubGateway, str, MediaOrigin, str], stub: StubGateway) -> MediaOrigin:
    return origins[2]


# ----- pattern.js ------------------------------------------------------------------------------

DECODE = """async ({width, height, rgb}) => {
  const { decodeStamp } = await import('/pattern.js');
  const bytes = Uint8Array.from(atob(rgb), (c) => c.charCodeAt(0));
  const rgba = new Uint8ClampedArray(width * height * 4);
  for (let i = 0, j = 0; i < bytes.length; i += 3, j += 4) {
    rgba.set(bytes.subarray(i, i + 3), j);
    rgba[j + 3] = 255;
  }
  return decodeStamp(new ImageData(rgba, width, height));
}"""


async def decode_in_chromium(page: Any, frame: np.ndarray) -> dict[str, int] | None:
    rgb = base64.b64encode(frame[..., ::-1].tobytes()).decode()
    return await page.evaluate(DECODE, {"width": frame.shape[1], "height": frame.shape[0], "rgb": rgb})


async def test_pattern_js_decodes_stamps_exactly(gateway_url: str) -> None:
    cases = [
        (640, 360, 1_764_000_000_123, 0),
        (320, 180, 2**48 - 1, 2**48 - 1),  # 48-bit extremes: beyond 2^32, exact in a double
        (1280, 720, 1_764_000_000_000 + 2**32 + 5, 123_456_789),
        (160, 90, 1, 1),  # the smallest block: 4 px
    ]
    async with chromium_page() as page:
        await page.goto(f"{gateway_url}/test/blank")
        for width, height, ms, frame_no in cases:
            frame = np.random.default_rng(frame_no % 97).integers(0, 255, (height, width, 3), np.uint8)
            stamp(frame, frame_no=frame_no, ms=ms)
            assert await decode_in_chromium(page, frame) == {"ms": ms, "frameNo": frame_no}

        rendered = TestPattern(WIDTH, HEIGHT).render(1234, 1_764_000_000_456)  # moving content
        assert await decode_in_chromium(page, rendered) == {"ms": 1_764_000_000_456, "frameNo": 1234}

        noisy = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        stamp(noisy, frame_no=42, ms=1_764_000_000_123)
        noise = np.random.default_rng(1).normal(0, 25, noisy.shape)
        noisy = np.clip(noisy + noise, 0, 255).astype(np.uint8)
        assert await decode_in_chromium(page, noisy) == {"ms": 1_764_000_000_123, "frameNo": 42}

        corrupt = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        stamp(corrupt, frame_no=42, ms=1_764_000_000_123)
        corrupt[16:32, 16 * 7 : 16 * 8] ^= 0xFF  # one whole block flipped: the check must fail
        assert await decode_in_chromium(page, corrupt) is None
        assert await decode_in_chromium(page, np.zeros((HEIGHT, WIDTH, 3), np.uint8)) is None


# ----- playback --------------------------------------------------------------------------------


@pytest.mark.parametrize("whep_status", [404, 500])
async def test_falls_back_to_hls_when_whep_fails(
    stub: StubGateway, gateway_url: str, media: MediaOrigin, whep_status: int
) -> None:
    media.whep = whep_status
    async with chromium_page() as page:
        errors = collect_errors(page)
        await page.goto(f"{gateway_url}/watch.html?stream={STREAM}")
        stats = await wait_playing(page, "hls")
        await assert_video_moves(page)
        notice = await page.text_content("#notice")

    assert media.offers == [
        {"authorization": "Bearer viewer-token-1", "content_type": "application/sdp"}
    ]
    assert "WebRTC failed" in notice and "no stream is available" in notice
    assert media.hls_opened == [{"token": "viewer-token-1", "via": "header"}]
    assert len(media.hls_children) > 3
    assert not any(c["authorization"] for c in media.hls_children), (
        "requests inside a session must not carry the token: each would cost a CORS preflight")
    g2g = stats["glassToGlass"]
    assert 0 < g2g["p50Ms"] <= g2g["p95Ms"] < 15_000, g2g
    assert g2g["frameNo"] > 0
    assert stats["bufferS"] is not None and stats["bitrateKbps"] > 0
    assert [e for e in errors if "Failed to load resource" not in e] == []


async def test_a_lost_hls_session_is_reopened_with_a_fresh_token(
    stub: StubGateway, gateway_url: str, media: MediaOrigin
) -> None:
    async with chromium_page() as page:
        await page.goto(f"{gateway_url}/watch.html?stream={STREAM}&via=hls")
        await wait_playing(page, "hls", samples=1)
        media.kick_hls_sessions()  # what a revocation or a MediaMTX restart does
        await media.until(lambda: len(media.hls_opened) == 2)
        await wait_playing(page, "hls", samples=1)
    assert media.offers == [], "via=hls must not try WHEP"
    assert stub.tokens == ["viewer-token-1", "viewer-token-2"], "a reconnect asks for a fresh token"
    assert [o["token"] for o in media.hls_opened] == stub.tokens


BROWSER_CLOCK_AN_HOUR_BEHIND = """
  const realNow = Date.now;
  Date.now = () => realNow() - 3600 * 1000;
"""


async def test_the_token_is_renewed_in_time_whatever_the_browser_clock_says(
    stub: StubGateway, gateway_url: str, media: MediaOrigin
) -> None:
    """A viewer's computer an hour slow would think the token good for an hour more: the player
    counts down ``expires_in`` instead, and asks for a fresh token at 3/4 of it."""
    stub.token_ttl = 8.0
    async with chromium_page() as page:
        await page.add_init_script(BROWSER_CLOCK_AN_HOUR_BEHIND)
        await page.goto(f"{gateway_url}/watch.html?stream={STREAM}&via=hls")
        await wait_playing(page, "hls", samples=1)
        await media.until(lambda: len(stub.tokens) >= 2, timeout=30)
    assert stub.tokens[:2] == ["viewer-token-1", "viewer-token-2"]


NATIVE_HLS_ONLY = """
  // A browser with native HLS and no Media Source Extensions (older Safari on iOS)
  window.MediaSource = undefined;
  window.ManagedMediaSource = undefined;
  const canPlayType = HTMLMediaElement.prototype.canPlayType;
  HTMLMediaElement.prototype.canPlayType = function (type) {
    return /mpegurl/i.test(type) ? 'maybe' : canPlayType.call(this, type);
  };
"""


async def test_native_hls_sends_the_token_in_the_query(
    stub: StubGateway, gateway_url: str, media: MediaOrigin
) -> None:
    async with chromium_page() as page:
        await page.goto(f"{gateway_url}/test/blank")
        native = await page.evaluate(
            "document.createElement('video').canPlayType('application/vnd.apple.mpegurl')")
        await page.add_init_script(NATIVE_HLS_ONLY)
        await page.goto(f"{gateway_url}/watch.html?stream={STREAM}&via=hls")
        if native:  # this chromium really plays HLS itself, as Safari does: the video must run
            stats = await wait_playing(page, "hls")
            await assert_video_moves(page)
            assert stats["glassToGlass"]["p50Ms"] > 0, "the canvas must stay readable"
        await media.until(lambda: len(media.hls_children) >= 2)
    assert media.hls_opened == [{"token": "viewer-token-1", "via": "query"}]
    assert not any(c["authorization"] for c in media.hls_children)


@pytest.fixture
def aiortc_peer(media: MediaOrigin, monkeypatch: pytest.MonkeyPatch) -> MediaOrigin:
    """The media origin answering WHEP with an aiortc peer that gathers loopback candidates only."""
    pytest.importorskip("aiortc", reason="aiortc is not installed")
    ice = pytest.importorskip("aioice.ice")
    monkeypatch.setattr(ice, "get_host_addresses", lambda *_, **__: ["127.0.0.1"])
    media.whep = "aiortc"
    return media


async def test_plays_whep_from_an_aiortc_peer(
    stub: StubGateway, gateway_url: str, aiortc_peer: MediaOrigin
) -> None:
    media = aiortc_peer
    async with chromium_page() as page:
        errors = collect_errors(page)
        await page.goto(f"{gateway_url}/watch.html?stream={STREAM}")
        stats = await wait_playing(page, "whep", samples=60)
        await assert_video_moves(page)
        await page.wait_for_function("window.framecastStats.bitrateKbps > 0", timeout=10_000)
        await page.goto(f"{gateway_url}/test/blank")  # leaving the page ends the WHEP session
        await media.until(lambda: media.deletes == 1)

    assert errors == []
    g2g = stats["glassToGlass"]
    assert 0 < g2g["p50Ms"] <= g2g["p95Ms"] < 2_000, g2g
    assert media.hls_opened == []


async def test_reconnects_when_the_whep_peer_goes_away(
    stub: StubGateway, gateway_url: str, aiortc_peer: MediaOrigin
) -> None:
    media = aiortc_peer
    async with chromium_page() as page:
        await page.goto(f"{gateway_url}/watch.html?stream={STREAM}")
        await wait_playing(page, "whep", samples=1)
        await media.peers[0].close()  # the server side drops, as when MediaMTX restarts
        await media.until(lambda: len(media.offers) == 2)
        await wait_playing(page, "whep", samples=1)
    assert stub.tokens == ["viewer-token-1", "viewer-token-2"], "a reconnect asks for a fresh token"


# ----- saying why nothing plays ----------------------------------------------------------------


async def test_a_failed_stream_shows_its_reason(
    stub: StubGateway, gateway_url: str, media: MediaOrigin
) -> None:
    stub.streams[STREAM] = stream_record("failed", "libx264 exited with code 1 after 3 restarts")
    async with chromium_page() as page:
        await page.goto(f"{gateway_url}/watch.html?stream={STREAM}")
        problem = page.locator("#problem")
        await problem.wait_for(state="visible")
        assert "libx264 exited with code 1 after 3 restarts" in await problem.text_content()
        assert await page.text_content("#state") == "failed"
    assert stub.tokens == [] and media.offers == [], "a failed stream must not be played"


async def test_a_stop_while_playing_ends_playback_with_the_reason(
    stub: StubGateway, gateway_url: str, media: MediaOrigin
) -> None:
    async with chromium_page() as page:
        await page.goto(f"{gateway_url}/watch.html?stream={STREAM}&via=hls")
        await wait_playing(page, "hls", samples=1)
        await asyncio.wait_for(stub.subscribed.wait(), 10)
        stub.publish("transition", {"stream_id": STREAM, "previous": "live", "state": "stopped",
                                    "reason": "stopped by operator", "at": time.time()})
        await page.locator("#problem", has_text="stopped by operator").wait_for()
        assert await page.evaluate("window.framecastStats.mode") is None
        assert await page.text_content("#state") == "stopped"


async def test_unreachable_mediamtx_is_explained(stub: StubGateway, gateway_url: str) -> None:
    with socket.socket() as nobody:  # bound, never listening: connections are refused
        nobody.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{nobody.getsockname()[1]}"
        stub.whep_url, stub.hls_url = f"{closed}/{STREAM}/whep", f"{closed}/{STREAM}/index.m3u8"
        async with chromium_page() as page:
            await page.goto(f"{gateway_url}/watch.html?stream={STREAM}")
            problem = page.locator("#problem")
            await problem.locator(".headline").wait_for()
            text = await problem.text_content()
    assert "MediaMTX is not running or cannot be reached" in text
    assert "framecast mediamtx install" in text and "make demo" in text
    assert "Trying again in" in text


# ----- the stream list -------------------------------------------------------------------------


async def test_stream_list_asks_for_the_key_then_follows_events(
    stub: StubGateway, gateway_url: str
) -> None:
    stub.api_key = "dev-key"
    stub.streams[STREAM] = stream_record("starting")
    async with chromium_page(width=390, height=800) as page:  # a phone
        await page.goto(f"{gateway_url}/")
        await page.get_by_label("API key").wait_for()
        assert "needs an API key" in await page.text_content("#problem")

        await page.goto(f"{gateway_url}/?key=dev-key")
        link = page.get_by_role("link", name=f"Watch {STREAM}")
        await link.wait_for()
        assert "key=" not in page.url, "the key must leave the address bar"
        row = page.get_by_role("row").filter(has=link)
        assert "starting" in await row.text_content()

        await asyncio.wait_for(stub.subscribed.wait(), 10)
        stub.publish("transition", {"stream_id": STREAM, "previous": "publishing", "state": "live",
                                    "reason": "", "at": time.time()})
        await row.locator(".state-live").wait_for()
        assert await link.get_attribute("href") == f"watch.html?stream={STREAM}"

"""MediaMTX's part between an RTSP publisher and a browser, for one path, built from aiortc.

MediaMTX cannot be installed on the development machines. To watch what framecast's encoder
publishes in a real browser, this peer takes the RTSP publish (FFmpeg's listener inside PyAV)
and forwards its H.264 packets, without decoding, to every WHEP viewer - what MediaMTX does
with an RTSP source and WebRTC readers. Its WHEP side speaks MediaMTX's HTTP (shared/MEDIAMTX.md
§4.1: ``POST /<path>/whep`` answering 201 with ``Location``, ``DELETE`` to leave, 404 while
nothing is published, the same CORS) and, like MediaMTX with ``authMethod: http``, asks the
auth hook about every viewer with MediaMTX's payload (§1.2).

With ``local_pattern=(width, height)`` viewers get a test pattern that aiortc encodes in this
process instead of the publisher's video: a WebRTC sender with nothing in front of it, the
floor that the benchmark compares framecast's path with.

Publishers are authenticated as MediaMTX does it, by :class:`~tests.support.rtsp_gate.RtspGate`
asking the same hook. Differences from MediaMTX: one path, one publisher session (a publisher
that reconnects is not taken back), only loopback ICE candidates.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
import uuid
from contextlib import AsyncExitStack
from typing import Any, Self

import httpx
from litestar import Litestar, Request, Response, delete, post
from litestar.config.cors import CORSConfig
from litestar.params import FromPath

from tests.support.fake_mediamtx import serve_asgi
from tests.support.rtsp import free_port
from tests.support.rtsp_gate import RtspGate

__all__ = ["WhepBridge", "stamped_track"]


def loopback_only_ice() -> None:
    """aioice leaves 127.0.0.1 out of its host candidates; loopback tests need nothing else."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda *_, **__: ["127.0.0.1"]


def stamped_track(width: int, height: int) -> Any:
    """A 30 fps video track of framecast's test pattern, stamped with the time it is rendered."""
    import av
    from aiortc import VideoStreamTrack

    from framecast.frames.pattern import TestPattern

    class StampedTrack(VideoStreamTrack):
        def __init__(self) -> None:
            super().__init__()
            self.frame_no = 0
            self.pattern = TestPattern(width, height)

        async def recv(self) -> av.VideoFrame:
            pts, time_base = await self.next_timestamp()  # paces the track at 30 fps
            image = self.pattern.render(self.frame_no, time.time_ns() // 1_000_000)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = pts, time_base
            self.frame_no += 1
            return frame

    return StampedTrack()


class WhepBridge:
    """``async with WhepBridge("cam1", hook_url=...) as bridge``: publish to ``bridge.rtsp_base``,
    watch at ``bridge.whep_base``/cam1/whep."""

    def __init__(self, path: str, *, hook_url: str | None = None, listen_timeout_s: int = 60,
                 local_pattern: tuple[int, int] | None = None) -> None:
        self.path = path
        self.hook_url = hook_url
        self.local_pattern = local_pattern
        self.listen_timeout_s = listen_timeout_s
        self.rtsp_port = free_port()
        self.gate = RtspGate(self.rtsp_port, free_port(), hook_url=hook_url)
        self.whep_base = ""
        self.viewers: dict[str, Any] = {}  # secret -> RTCPeerConnection
        self.hook_calls: list[dict[str, Any]] = []
        self.published = asyncio.Event()
        self._player: Any = None
        self._relay: Any = None
        self._opening: asyncio.Task[None] | None = None
        self._reading: asyncio.Task[None] | None = None
        self._stack = AsyncExitStack()

    @property
    def rtsp_base(self) -> str:
        """Where a publisher sends ``<base>/<path>``, as to MediaMTX's ``:8554``."""
        return f"rtsp://127.0.0.1:{self.rtsp_port}"

    async def __aenter__(self) -> Self:
        from aiortc.contrib.media import MediaRelay

        loopback_only_ice()
        self._relay = MediaRelay()
        await self._stack.enter_async_context(self.gate)
        self._opening = asyncio.create_task(self._accept_publisher())
        self.whep_base = await self._stack.enter_async_context(serve_asgi(self._app()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for pc in list(self.viewers.values()):
            await pc.close()
        self.viewers.clear()
        if self._opening is not None and not self._opening.done():
            # the listener blocks in accept(): a connection that hangs up at once ends the wait
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.gate.upstream_port), 1):
                pass
            with contextlib.suppress(Exception):
                await self._opening
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reading
        if self._player is not None and self._player.video is not None:
            self._player.video.stop()
        await self._stack.aclose()

    async def _accept_publisher(self) -> None:
        from aiortc.contrib.media import MediaPlayer

        options = {"rtsp_flags": "listen", "listen_timeout": str(self.listen_timeout_s),
                   "fflags": "nobuffer", "flags": "low_delay"}
        url = f"rtsp://127.0.0.1:{self.gate.upstream_port}/{self.path}"
        # av.open blocks until the publisher has connected and sent its SDP
        self._player = await asyncio.to_thread(
            MediaPlayer, url, format="rtsp", options=options, decode=False)
        # MediaMTX reads a publisher all the time, viewers or not: a viewer joins mid-stream and
        # waits for the next keyframe, and the publisher is never held back by a full socket
        self._reading = asyncio.create_task(self._read_always(self._relay.subscribe(self._player.video)))
        self.published.set()

    @staticmethod
    async def _read_always(track: Any) -> None:
        with contextlib.suppress(Exception):  # the publisher went away: nothing more to read
            while True:
                await track.recv()

    # ----- WHEP ----------------------------------------------------------------------------------

    async def _allowed(self, request: Request[Any, Any, Any], session_id: str) -> bool:
        if self.hook_url is None:
            return True
        authorization = request.headers.get("authorization", "")
        payload = {
            "ip": request.client.host if request.client else "", "user": "", "password": "",
            "token": authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else "",
            "action": "read", "path": self.path, "protocol": "webrtc", "id": session_id,
            "query": request.url.query, "userAgent": request.headers.get("user-agent", ""),
        }
        self.hook_calls.append(payload)
        async with httpx.AsyncClient(timeout=10) as client:
            reply = await client.post(self.hook_url, json=payload)
        return 200 <= reply.status_code < 300

    async def _answer(self, offer: str) -> tuple[str, str]:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        if self.local_pattern is not None:
            track = stamped_track(*self.local_pattern)
        else:
            track = self._relay.subscribe(self._player.video, buffered=True)
        sender = pc.addTrack(track)
        transceiver = next(t for t in pc.getTransceivers() if t.sender is sender)
        # forwarding without decoding needs H.264, never VP8 (and the floor uses the same codec)
        transceiver.setCodecPreferences(
            [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"])
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        secret = str(uuid.uuid4())
        self.viewers[secret] = pc
        return secret, pc.localDescription.sdp

    def _app(self) -> Litestar:
        path = self.path

        def error(status: int, message: str) -> Response[Any]:
            return Response({"status": "error", "error": message}, status_code=status)

        @post(f"/{path}/whep", status_code=201)
        async def whep(request: Request[Any, Any, Any]) -> Response[Any]:
            if request.headers.get("content-type", "").split(";")[0] != "application/sdp":
                return error(400, "invalid Content-Type")
            session_id = str(uuid.uuid4())
            if not await self._allowed(request, session_id):
                # MediaMTX: a challenge when nothing was sent, else a random 0-4 s delay first
                if not request.headers.get("authorization"):
                    return Response({"status": "error", "error": "authentication error"}, status_code=401,
                                    headers={"WWW-Authenticate": 'Basic realm="mediamtx"'})
                await asyncio.sleep(random.uniform(0.0, 4.0))
                return error(401, "authentication error")
            if not self.published.is_set():
                return error(404, f"no stream is available on path '{path}'")
            secret, answer = await self._answer((await request.body()).decode())
            return Response(answer, status_code=201, media_type="application/sdp", headers={
                "Location": f"/{path}/whep/{secret}", "ID": session_id, "ETag": "*",
                "Accept-Patch": "application/trickle-ice-sdpfrag"})

        @delete(f"/{path}/whep/{{secret:str}}", status_code=200)
        async def leave(secret: FromPath[str]) -> Response[Any]:
            pc = self.viewers.pop(secret, None)
            if pc is None:
                return error(404, "session not found")
            await pc.close()
            return Response({"status": "ok"})

        cors = CORSConfig(
            allow_origins=["*"], allow_methods=["OPTIONS", "GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match"],
            expose_headers=["ETag", "ID", "Accept-Patch", "Link", "Location"],
        )
        return Litestar([whep, leave], cors_config=cors, openapi_config=None, logging_config=None)


"""framecast against a real MediaMTX, wherever a binary is present.

One stack for the module: NATS, auth, a MediaMTX asking auth's hook (through a recorder that
keeps MediaMTX's payloads), the encoder and capture publishing a test pattern. Each test reads
the stream as a viewer would (RTSP, HLS, WHEP) and checks what MediaMTX asked the hook against
what the stand-ins send where no binary is present. Elsewhere these tests skip; the stand-ins
(tests/support/rtsp_gate.py, whep_bridge.py, fake_mediamtx.py) carry the same checks.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg
import jwt
import pytest

from framecast.auth import AuthSettings, KeyStore
from framecast.auth import lifespan as auth_lifespan
from framecast.capture.service import lifespan as capture_lifespan
from framecast.capture.settings import CaptureSettings
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import Accepted, StartStream, TestPatternSource, TokenIssued, TokenRequest, VideoFormat
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from tests.support.fake_mediamtx import path_item
from tests.support.real_mediamtx import RealMediaMTX, needs_mediamtx, real_mediamtx
from tests.support.rtsp import free_port
from tests.support.rtsp_gate import _Request, hook_payload
from tests.support.services import eventually, running, wait_for_state

pytestmark = needs_mediamtx

HOOK_KEYS = ["ip", "user", "password", "token", "action", "path", "protocol", "id", "query", "userAgent"]
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@dataclass
class Stack:
    nats_url: str
    auth_addr: str
    mediamtx: RealMediaMTX
    store: StateStore
    bus: Bus
    stream_id: str
    tmp: Path

    async def token(self, role: str, stream_id: str | None = None, **fields: Any) -> str:
        issued = await self.bus.request(subjects.AUTH_TOKEN_ISSUE, TokenRequest(
            role=role, stream_id=stream_id or self.stream_id, subject="test", **fields), TokenIssued, service="auth")
        return issued.token

    async def api(self, path: str) -> httpx.Response:
        service = await self.token("service")
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {service}"}) as client:
            return await client.get(f"{self.mediamtx.api}{path}")


@pytest.fixture(scope="module")
async def stack(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    tmp = tmp_path_factory.mktemp("real-mediamtx")
    bus = await Bus.connect(nats_server.url, client_id="test-real-mediamtx")
    store = await StateStore.open(bus, "test")
    stream_id = "real" + os.urandom(4).hex()
    auth_addr = f"127.0.0.1:{free_port()}"
    try:
        async with real_mediamtx(tmp, auth_addr, record=True) as server:
            async with (
                running("auth", AuthSettings(nats_url=nats_server.url, auth_addr=auth_addr,
                                             auth_key_dir=str(tmp / "keys"), mediamtx_api=server.api), auth_lifespan),
                running("encoder", EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=server.rtsp, mediamtx_api=server.api),
                        encoder_lifespan),
                running("capture", CaptureSettings(nats_url=nats_server.url), capture_lifespan),
            ):
                await bus.request(subjects.STREAM_START,
                                  StartStream(stream_id=stream_id, source=TestPatternSource(),
                                              format=VideoFormat(width=320, height=240, fps=30)),
                                  Accepted, service="capture", timeout=10)
                await wait_for_state(store, stream_id, StreamState.PUBLISHING, timeout=30)
                yield Stack(nats_server.url, auth_addr, server, store, bus, stream_id, tmp)
    finally:
        await bus.close()


async def ffmpeg(*args: str, timeout: float = 60) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(FFMPEG, "-hide_banner", "-loglevel", "error", *args,
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, err.decode(errors="replace")


async def framecast(stack: Stack, *args: str, stdin: str = "") -> str:
    """Run the ``framecast`` CLI as an operator would, against the stack; its standard output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from framecast.runtime.cli import main; sys.exit(main())", *args,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "FRAMECAST_NATS_URL": stack.nats_url, "FRAMECAST_AUTH_KEY_DIR": str(stack.tmp / "keys")})
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), 30)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def get_path(stack: Stack, stream_id: str | None = None) -> dict[str, Any]:
    answer = await stack.api(f"/v3/paths/get/{stream_id or stack.stream_id}")
    return answer.json() if answer.status_code == 200 else {}


async def test_the_encoder_publishes_with_its_token_as_the_stand_in_sees_it(stack: Stack) -> None:
    item: dict[str, Any] = {}

    async def available() -> bool:
        nonlocal item
        item = await get_path(stack)
        return bool(item.get("available"))

    await eventually(available, f"MediaMTX lists {stack.stream_id} as available", 10)
    assert [track["codec"] for track in item["tracks2"]] == ["H264"]
    # the control-API stand-in's path item has MediaMTX's keys, in its order, and its track props
    fake = path_item(stack.stream_id, width=320, height=240)
    assert list(fake) == list(item)
    assert set(fake["tracks2"][0]["codecProps"]) == set(item["tracks2"][0]["codecProps"])
    assert fake["source"].keys() == item["source"].keys() and item["source"]["type"] == "rtspSession"

    recorder = stack.mediamtx.recorder
    assert recorder is not None
    published = recorder.of(action="publish", path=stack.stream_id)
    assert published and list(published[0]) == HOOK_KEYS
    real = published[0]
    assert UUID.match(real["id"]) and real["userAgent"].startswith("Lavf")
    # the RTSP gate, given FFmpeg's ANNOUNCE, sends MediaMTX's payload value for value
    announce = _Request("ANNOUNCE", f"{stack.mediamtx.rtsp}/{stack.stream_id}?{real['query']}",
                        [("CSeq", "2"), ("User-Agent", real["userAgent"])])
    stand_in = hook_payload(announce, ip="127.0.0.1", session_id=real["id"], action="publish")
    assert list(stand_in) == HOOK_KEYS and stand_in == real


async def test_publishing_without_a_token_is_refused(stack: Stack) -> None:
    code, err = await ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=10", "-t", "1", "-c:v", "libx264",
                             "-pix_fmt", "yuv420p", "-f", "rtsp", "-rtsp_transport", "tcp",
                             f"{stack.mediamtx.rtsp}/{stack.stream_id}-intruder")
    assert code != 0 and "401" in err
    anonymous = await httpx.AsyncClient().get(f"{stack.mediamtx.api}/v3/paths/list")
    assert anonymous.status_code == 401


async def test_a_viewer_reads_rtsp_with_its_token_and_not_another_streams(stack: Stack) -> None:
    viewer = await stack.token("viewer")
    code, err = await ffmpeg("-rtsp_transport", "tcp", "-i", f"{stack.mediamtx.rtsp}/{stack.stream_id}?token={viewer}",
                             "-frames:v", "10", "-f", "null", "-")
    assert code == 0, err
    other = await stack.token("viewer", stream_id=stack.stream_id + "x")
    code, err = await ffmpeg("-rtsp_transport", "tcp", "-i", f"{stack.mediamtx.rtsp}/{stack.stream_id}?token={other}",
                             "-frames:v", "1", "-f", "null", "-")
    assert code != 0 and "401" in err
    recorder = stack.mediamtx.recorder
    assert recorder is not None
    reads = recorder.of(action="read", protocol="rtsp", token=viewer)
    # DESCRIBE asks with the connection's id and no user agent, the first SETUP with the session's
    assert [call["userAgent"] for call in reads][:2] == ["", reads[1]["userAgent"]] and reads[1]["userAgent"]
    assert reads[0]["id"] != reads[1]["id"]


async def hls_get(client: httpx.AsyncClient, url: str) -> httpx.Response:
    return await client.get(url, follow_redirects=True)


@pytest.mark.parametrize("variant", ["fmp4", "lowLatency"])
async def test_hls_opens_a_session_with_the_viewer_token(stack: Stack, variant: str, tmp_path: Path) -> None:
    """MediaMTX asks the hook once, when a session opens; playlists and segments then need the
    session, not the token."""
    if variant == "fmp4":
        server, stream_id = stack.mediamtx, stack.stream_id
        async with httpx.AsyncClient() as client:
            await _check_hls(stack, client, server, stream_id)
        return
    # low-latency HLS on a MediaMTX of its own, published by FFmpeg with a publisher token
    stream_id = stack.stream_id + "ll"
    async with real_mediamtx(tmp_path, stack.auth_addr, hls_variant=variant) as server:
        publisher = await stack.token("publisher", stream_id=stream_id)
        proc = await asyncio.create_subprocess_exec(
            FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=30",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "30",
            "-f", "rtsp", "-rtsp_transport", "tcp", f"{server.rtsp}/{stream_id}?token={publisher}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            async with httpx.AsyncClient() as client:
                await _check_hls(stack, client, server, stream_id)
        finally:
            proc.terminate()
            await proc.wait()


async def _check_hls(stack: Stack, client: httpx.AsyncClient, server: RealMediaMTX, stream_id: str) -> None:
    refused = await hls_get(client, f"{server.hls}/{stream_id}/index.m3u8")
    assert refused.status_code == 401
    viewer = await stack.token("viewer", stream_id=stream_id)
    playlist = None
    for _ in range(100):  # MediaMTX answers 404 until its muxer has a first segment
        playlist = await hls_get(client, f"{server.hls}/{stream_id}/index.m3u8?token={viewer}")
        if playlist.status_code == 200:
            break
        await asyncio.sleep(0.1)
    assert playlist is not None and playlist.status_code == 200, playlist
    media = next(line for line in playlist.text.splitlines() if line and not line.startswith("#"))
    # later URIs carry the session secret; MediaMTX also copies the opening request's query
    # (token included) into them, though it does not check the token there again
    assert "session=" in media
    variant = await client.get(f"{server.hls}/{stream_id}/{media}")
    assert variant.status_code == 200 and "#EXTINF" in variant.text
    stolen = await httpx.AsyncClient().get(f"{server.hls}/{stream_id}/{media.split('?')[0]}")
    assert stolen.status_code == 401


async def test_whep_asks_the_hook_as_the_bridge_does(stack: Stack) -> None:
    pytest.importorskip("aiortc", reason="aiortc is not installed")
    from aiortc import RTCConfiguration, RTCPeerConnection

    from tests.support.whep_bridge import loopback_only_ice

    loopback_only_ice()
    viewer = await stack.token("viewer")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    url = f"{stack.mediamtx.whep}/{stack.stream_id}/whep?x=1"
    try:
        async with httpx.AsyncClient() as client:
            offer = pc.localDescription.sdp
            anonymous = await client.post(url, content=offer, headers={"Content-Type": "application/sdp"})
            assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == 'Basic realm="mediamtx"'
            answer = await client.post(url, content=offer, headers={
                "Content-Type": "application/sdp", "Authorization": f"Bearer {viewer}", "User-Agent": "viewer/1"})
            assert answer.status_code == 201, answer.text
            session = answer.headers["id"]
            await client.delete(f"{stack.mediamtx.whep}{answer.headers['location']}")
    finally:
        await pc.close()
    recorder = stack.mediamtx.recorder
    assert recorder is not None
    real = recorder.of(action="read", protocol="webrtc", token=viewer)[-1]
    assert list(real) == HOOK_KEYS
    assert real == {"ip": "127.0.0.1", "user": "", "password": "", "token": viewer, "action": "read",
                    "path": stack.stream_id, "protocol": "webrtc", "id": session, "query": "x=1",
                    "userAgent": "viewer/1"}


async def test_revoking_a_viewer_token_ends_its_rtsp_session(stack: Stack) -> None:
    viewer = await stack.token("viewer")
    reader = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp",
        "-i", f"{stack.mediamtx.rtsp}/{stack.stream_id}?token={viewer}", "-f", "null", "-",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        async def reading() -> bool:
            item = await get_path(stack)
            return any(r["type"] == "rtspSession" for r in item.get("readers", []))

        await eventually(reading, "MediaMTX lists the RTSP reader", 10)
        await framecast(stack, "token", "revoke", "--token", "-", stdin=viewer)
        await asyncio.wait_for(reader.wait(), 20)  # MediaMTX ended the session on auth's kick
        code, _ = await ffmpeg("-rtsp_transport", "tcp", "-i", f"{stack.mediamtx.rtsp}/{stack.stream_id}?token={viewer}",
                               "-frames:v", "1", "-f", "null", "-")
        assert code != 0
    finally:
        if reader.returncode is None:
            reader.kill()
            await reader.wait()


async def test_jwt_mode_decides_as_the_hook_does(stack: Stack, tmp_path: Path) -> None:
    """``authMethod: jwt``: MediaMTX verifies framecast's tokens against auth's JWKS itself."""
    stream_id = stack.stream_id + "jwt"
    async with real_mediamtx(tmp_path, stack.auth_addr, auth="jwt") as server:
        publisher = await stack.token("publisher", stream_id=stream_id)
        viewer = await stack.token("viewer", stream_id=stream_id)
        other = await stack.token("viewer", stream_id=stream_id + "x")
        proc = await asyncio.create_subprocess_exec(
            FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "10",
            "-f", "rtsp", "-rtsp_transport", "tcp", f"{server.rtsp}/{stream_id}?token={publisher}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        try:
            decisions = {}
            for name, token in (("viewer", viewer), ("other", other)):
                code = 1
                for _ in range(50):  # until the publisher is on the path
                    code, err = await ffmpeg("-rtsp_transport", "tcp", "-i", f"{server.rtsp}/{stream_id}?token={token}",
                                             "-frames:v", "1", "-f", "null", "-")
                    if code == 0 or "401" in err:
                        break
                    await asyncio.sleep(0.2)
                decisions[name] = code == 0
            assert proc.returncode is None, "MediaMTX refused the publisher's token"
        finally:
            proc.terminate()
            await proc.wait()
    async with httpx.AsyncClient() as client:
        hook = {}
        for name, token in (("viewer", viewer), ("other", other)):
            answer = await client.post(f"http://{stack.auth_addr}/mediamtx/auth", json={
                "ip": "127.0.0.1", "user": "", "password": "", "token": token, "action": "read",
                "path": stream_id, "protocol": "rtsp", "id": None, "query": f"token={token}", "userAgent": ""})
            hook[name] = answer.status_code < 300
    assert decisions == hook == {"viewer": True, "other": False}


async def sessions(stack: Stack, kind: str) -> list[str]:
    """The ids of the ``kind`` sessions (``webrtcsessions``, ``hlssessions``) on the stack's path."""
    answer = await stack.api(f"/v3/{kind}/list")
    assert answer.status_code == 200, answer.text
    return [item["id"] for item in answer.json()["items"] if item.get("path") == stack.stream_id]


async def test_revoking_a_viewer_token_ends_its_webrtc_session(stack: Stack) -> None:
    pytest.importorskip("aiortc", reason="aiortc is not installed")
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.mediastreams import MediaStreamError

    from tests.support.whep_bridge import loopback_only_ice

    loopback_only_ice()
    viewer = await stack.token("viewer")
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    frames: list[float] = []
    track_ended = asyncio.Event()
    receivers: list[asyncio.Task[None]] = []

    async def receive(track: Any) -> None:
        try:
            while True:
                await track.recv()
                frames.append(asyncio.get_running_loop().time())
        except MediaStreamError:
            track_ended.set()

    pc.on("track", lambda track: receivers.append(asyncio.create_task(receive(track))))
    await pc.setLocalDescription(await pc.createOffer())
    try:
        async with httpx.AsyncClient() as client:
            answer = await client.post(f"{stack.mediamtx.whep}/{stack.stream_id}/whep", content=pc.localDescription.sdp,
                                       headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {viewer}"})
        assert answer.status_code == 201, answer.text
        await pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
        await eventually(lambda: len(frames) >= 10, "the WHEP peer receives frames", timeout=20)
        session = answer.headers["id"]
        assert session in await sessions(stack, "webrtcsessions")

        await framecast(stack, "token", "revoke", "--token", "-", stdin=viewer)
        await eventually(lambda: _absent(stack, "webrtcsessions", session), "MediaMTX no longer lists the session", 15)
        await eventually(lambda: track_ended.is_set() or pc.connectionState in ("closed", "failed"),
                         "the viewer's connection ends", timeout=15)
        received = len(frames)
        await asyncio.sleep(0.5)  # no event marks "no more frames": look for half a second
        assert len(frames) == received, "frames still arrive after the kick"
    finally:
        await pc.close()
        for task in receivers:
            task.cancel()


async def _absent(stack: Stack, kind: str, session: str) -> bool:
    return session not in await sessions(stack, kind)


async def test_revoking_a_viewer_token_ends_its_hls_session(stack: Stack) -> None:
    viewer = await stack.token("viewer")
    async with httpx.AsyncClient(timeout=10) as client:
        playlist = None
        for _ in range(100):  # MediaMTX answers 404 until its muxer has a first segment
            playlist = await hls_get(client, f"{stack.mediamtx.hls}/{stack.stream_id}/index.m3u8?token={viewer}")
            if playlist.status_code == 200:
                break
            await asyncio.sleep(0.1)
        assert playlist is not None and playlist.status_code == 200, playlist
        media = next(line for line in playlist.text.splitlines() if line and not line.startswith("#"))
        assert (await client.get(f"{stack.mediamtx.hls}/{stack.stream_id}/{media}")).status_code == 200
        (session,) = await sessions(stack, "hlssessions")

        await framecast(stack, "token", "revoke", "--token", "-", stdin=viewer)
        await eventually(lambda: _absent(stack, "hlssessions", session), "MediaMTX no longer lists the session", 15)
        # the player's next request, with the session (and the token MediaMTX copied into the URI)
        after = await client.get(f"{stack.mediamtx.hls}/{stack.stream_id}/{media}")
        assert after.status_code in (401, 404), (after.status_code, after.text)
        assert await sessions(stack, "hlssessions") == [], "the revoked token opened a new session"


async def test_jwt_mode_follows_a_key_rotation(stack: Stack, tmp_path: Path) -> None:
    """``authMethod: jwt`` through ``framecast auth rotate-key``: tokens of the current key keep
    working, and those of the next key once MediaMTX has refreshed the JWKS it caches."""
    stream_id = stack.stream_id + "rot"
    jwks_url = f"http://{stack.auth_addr}/.well-known/jwks.json"
    async with real_mediamtx(tmp_path, stack.auth_addr, auth="jwt") as server, httpx.AsyncClient() as client:
        publisher = await stack.token("publisher", stream_id=stream_id)
        proc = await asyncio.create_subprocess_exec(
            FFMPEG, "-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "10",
            "-f", "rtsp", "-rtsp_transport", "tcp", f"{server.rtsp}/{stream_id}?token={publisher}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

        async def reads(token: str) -> bool:
            for _ in range(50):  # until the publisher is on the path
                code, err = await ffmpeg("-rtsp_transport", "tcp", "-i", f"{server.rtsp}/{stream_id}?token={token}",
                                         "-frames:v", "1", "-f", "null", "-")
                if code == 0 or "401" in err:
                    return code == 0
                await asyncio.sleep(0.2)
            raise AssertionError(f"no answer from MediaMTX: {err}")

        try:
            assert await reads(await stack.token("viewer", stream_id=stream_id))  # MediaMTX has the JWKS now
            current = [key["kid"] for key in (await client.get(jwks_url)).json()["keys"]]
            await framecast(stack, "auth", "rotate-key")
            published = [key["kid"] for key in (await client.get(jwks_url)).json()["keys"]]
            # the running auth service publishes the key rotated by another process (issue 15)
            assert published[:-1] == current and len(published) == len(current) + 1
            assert await reads(await stack.token("viewer", stream_id=stream_id)), "the current key stopped working"

            # what auth signs once the next key is current (an hour later): the same claims, the next key
            keys = KeyStore(stack.tmp / "keys")
            following = keys.signing_key(keys.records()[-1].not_before_signing)
            assert following.kid == published[-1]
            claims = jwt.decode(await stack.token("viewer", stream_id=stream_id), options={"verify_signature": False})
            next_signed = following.sign({**claims, "jti": "next-key-" + os.urandom(4).hex()})
            assert not await reads(next_signed), "MediaMTX refetched its JWKS on an unknown kid"
            refresh = await client.post(f"{server.api}/v3/auth/jwks/refresh",
                                        headers={"Authorization": f"Bearer {await stack.token('service')}"})
            assert refresh.status_code == 200, refresh.text
            assert await reads(next_signed)
            assert proc.returncode is None, "MediaMTX dropped the publisher"
        finally:
            proc.terminate()
            await proc.wait()


async def test_after_a_mediamtx_restart_the_encoder_publishes_again(stack: Stack) -> None:
    before = await stack.store.get(stack.stream_id)
    assert before is not None
    await stack.mediamtx.restart()

    async def available() -> bool:
        return bool((await get_path(stack)).get("available"))

    await eventually(available, "MediaMTX lists the stream again after its restart", 30)
    record = await wait_for_state(stack.store, stack.stream_id, StreamState.PUBLISHING)
    assert record.since > before.since

"""Moving a stream between encoders in front of the real MediaMTX: what a viewer reading it sees.

Each stream's path entry (``alwaysAvailable``, framecast.encoder.paths) keeps the readers'
sessions through a change of publisher. In a drain MediaMTX lets the new publisher replace the
old one (``overridePublisher``), so the draining encoder stays on air until the other encoder's
FFmpeg takes the path over: the viewer should miss no more than a keyframe interval. When the
encoder's host is lost instead, the viewer sees MediaMTX's dark "stream is offline" picture until
the stream publishes from another host, in the same session. The viewer is FFmpeg reading by RTSP
and decoding every frame (reconnecting at once with its token, as the player does, were its
session to end); the tests measure the longest time it goes without a picture of the stream and
how many sessions it needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from framecast.auth import AuthSettings
from framecast.auth import lifespan as auth_lifespan
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import TokenIssued, TokenRequest
from framecast.proto.states import StreamState as S
from framecast.proto.store import StateStore
from tests.support.real_mediamtx import RealMediaMTX, needs_mediamtx, real_mediamtx
from tests.support.rtsp import free_port
from tests.support.services import cv_worker, eventually, running, wait_for_state
from tests.test_fleet import FRAMECAST, heard_from

pytestmark = needs_mediamtx
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
W, H = 320, 240
PATTERN_BRIGHTER_THAN = 60
"""The test pattern's mean grey is about 120; MediaMTX's offline filler's about 5."""


class Viewer:
    """FFmpeg reading the stream by RTSP through MediaMTX and decoding every frame, reconnecting at
    once with its token when its session ends, as the player does; ``arrivals`` are the times of
    the stream's pictures (MediaMTX's dark offline picture is not one), ``sessions`` how many
    RTSP sessions it needed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.arrivals: list[float] = []
        self.sessions = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Viewer:
        self._task = asyncio.create_task(self._watch())
        await eventually(lambda: len(self.arrivals) >= 30 or self.done, "the viewer decodes pictures", 20)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def more(self, count: int, what: str) -> None:
        seen = len(self.arrivals)
        await eventually(lambda: len(self.arrivals) >= seen + count or self.done, what, 20)
        assert not self.done, self._task

    def longest_gap_since(self, since: float) -> float:
        around = [at for at in self.arrivals if at >= since - 1]
        return max(b - a for a, b in zip(around, around[1:], strict=False))

    async def _watch(self) -> None:
        while True:
            self.sessions += 1
            reader = await asyncio.create_subprocess_exec(
                FFMPEG, "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", self.url,
                "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{W}x{H}", "-", stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL)
            assert reader.stdout is not None
            try:
                while True:
                    picture = await reader.stdout.readexactly(W * H)
                    if np.frombuffer(picture, np.uint8).mean() > PATTERN_BRIGHTER_THAN:
                        self.arrivals.append(time.monotonic())
            except asyncio.IncompleteReadError:
                pass  # the session ended: reconnect, as the player does
            finally:
                if reader.returncode is None:
                    reader.kill()
                await reader.wait()


async def viewer_url(bus: Bus, server: RealMediaMTX, stream_id: str) -> str:
    viewer = await bus.request(subjects.AUTH_TOKEN_ISSUE, TokenRequest(role="viewer", stream_id=stream_id),
                               TokenIssued, service="auth")
    return f"{server.rtsp}/{stream_id}?token={viewer.token}"


async def test_a_viewer_keeps_watching_while_its_streams_encoder_is_drained(
    nats_server: NatsServer, bus: Bus, stream_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRAMECAST_HOST_ID", "camera-host")
    store = await StateStore.open(bus, "test")
    auth_addr = f"127.0.0.1:{free_port()}"
    first, second = f"a-{stream_id}", f"b-{stream_id}"
    async with real_mediamtx(tmp_path, auth_addr) as server:

        def encoder() -> EncoderSettings:
            return EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=server.rtsp, mediamtx_api=server.api,
                                   host_id="camera-host")

        async with (
            running("auth", AuthSettings(nats_url=nats_server.url, auth_addr=auth_addr,
                                         auth_key_dir=str(tmp_path / "keys"), mediamtx_api=server.api), auth_lifespan),
            running("encoder", encoder(), encoder_lifespan, instance=first),
            cv_worker(nats_server.url, stream_id, width=W, height=H),
        ):
            await wait_for_state(store, stream_id, S.PUBLISHING, timeout=30)
            async with Viewer(await viewer_url(bus, server, stream_id)) as viewer:
                async with running("encoder", encoder(), encoder_lifespan, instance=second):
                    await heard_from(bus, second)
                    drained_at = time.monotonic()
                    drain = await asyncio.create_subprocess_exec(
                        FRAMECAST, "encoder", "drain", first, env=dict(os.environ, FRAMECAST_NATS_URL=nats_server.url),
                        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
                    _, err = await asyncio.wait_for(drain.communicate(), 60)
                    assert drain.returncode == 0, err.decode()
                    await wait_for_state(store, stream_id, S.PUBLISHING, timeout=20,
                                         where=lambda r: r.encoder_id == second)
                    await viewer.more(30, "the viewer decodes the new encoder's pictures")
    gap = viewer.longest_gap_since(drained_at)
    print(f"drain with the real MediaMTX: longest gap between a viewer's pictures {gap * 1000:.0f} ms "
          f"({viewer.sessions} RTSP session(s))")
    assert viewer.sessions == 1, "the viewer's session survived the change of publisher"
    assert gap < 2.0, f"the viewer went {gap:.2f} s without a picture"


async def test_a_viewer_keeps_its_session_when_its_streams_encoder_host_is_lost(
    nats_server: NatsServer, bus: Bus, stream_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The encoder on the camera's host is killed (SIGKILL, as a lost host): the stream moves to
    the encoder on another host; meanwhile the viewer sees MediaMTX's offline picture, and its
    session carries on with the new publisher's pictures."""
    monkeypatch.setenv("FRAMECAST_HOST_ID", "camera-host")
    store = await StateStore.open(bus, "test")
    auth_addr = f"127.0.0.1:{free_port()}"
    near, far = f"near-{stream_id}", f"far-{stream_id}"
    async with real_mediamtx(tmp_path, auth_addr) as server:
        env = dict(os.environ, FRAMECAST_NATS_URL=nats_server.url, FRAMECAST_INSTANCE_ID=near,
                   FRAMECAST_HOST_ID="camera-host", FRAMECAST_MEDIAMTX_RTSP=server.rtsp,
                   FRAMECAST_MEDIAMTX_API=server.api, FRAMECAST_HEALTH_ADDR="")
        async with (
            running("auth", AuthSettings(nats_url=nats_server.url, auth_addr=auth_addr,
                                         auth_key_dir=str(tmp_path / "keys"), mediamtx_api=server.api), auth_lifespan),
            running("encoder", EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=server.rtsp,
                                               mediamtx_api=server.api, host_id="spare-host"), encoder_lifespan,
                    instance=far),
        ):
            process = await asyncio.create_subprocess_exec(sys.executable, "-m", "framecast.encoder", env=env,
                                                           stderr=asyncio.subprocess.DEVNULL)
            try:
                await heard_from(bus, near)
                async with cv_worker(nats_server.url, stream_id, width=W, height=H):
                    record = await wait_for_state(store, stream_id, S.PUBLISHING, timeout=30)
                    assert record.encoder_id == near
                    async with Viewer(await viewer_url(bus, server, stream_id)) as viewer:
                        process.send_signal(signal.SIGKILL)
                        lost_at = time.monotonic()
                        await wait_for_state(store, stream_id, S.PUBLISHING, timeout=30,
                                             where=lambda r: r.encoder_id == far)
                        await viewer.more(30, "the viewer decodes the other host's pictures")
            finally:
                if process.returncode is None:
                    process.kill()
                await process.wait()
    gap = viewer.longest_gap_since(lost_at)
    print(f"encoder host lost with the real MediaMTX: the viewer went {gap * 1000:.0f} ms without a picture "
          f"({viewer.sessions} RTSP session(s))")
    assert viewer.sessions == 1, "the viewer's session survived the loss of the publisher"
    assert gap < 10.0, f"the viewer went {gap:.2f} s without a picture"

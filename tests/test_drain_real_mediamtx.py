"""Draining an encoder in front of the real MediaMTX: what a viewer reading the stream sees.

MediaMTX lets a new publisher replace the one on a path (``overridePublisher``, on by default),
so the draining encoder stays on air until the other encoder's FFmpeg takes the path over; the
stream's path entry (``alwaysAvailable``, framecast.encoder.paths) keeps the readers' sessions
through that change. Here the viewer is FFmpeg reading by RTSP through MediaMTX and decoding
every frame (reconnecting at once with its token, as the player does, were its session to end);
the test measures the longest time it goes without a picture of the stream (MediaMTX's dark
"stream is offline" filler does not count) and that it never had to reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
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
from tests.support.real_mediamtx import needs_mediamtx, real_mediamtx
from tests.support.rtsp import free_port
from tests.support.services import cv_worker, eventually, running, wait_for_state
from tests.test_fleet import FRAMECAST, heard_from

pytestmark = needs_mediamtx
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
W, H = 320, 240
PATTERN_BRIGHTER_THAN = 60
"""The test pattern's mean grey is about 120; MediaMTX's offline filler's about 5."""


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
            viewer = await bus.request(subjects.AUTH_TOKEN_ISSUE, TokenRequest(role="viewer", stream_id=stream_id),
                                       TokenIssued, service="auth")
            arrivals: list[float] = []
            sessions = 0

            async def watch() -> None:
                nonlocal sessions
                while True:
                    sessions += 1
                    reader = await asyncio.create_subprocess_exec(
                        FFMPEG, "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp",
                        "-i", f"{server.rtsp}/{stream_id}?token={viewer.token}",
                        "-f", "rawvideo", "-pix_fmt", "gray", "-", stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.DEVNULL)
                    assert reader.stdout is not None
                    try:
                        while True:
                            picture = await reader.stdout.readexactly(W * H)
                            if np.frombuffer(picture, np.uint8).mean() > PATTERN_BRIGHTER_THAN:
                                arrivals.append(time.monotonic())
                    except asyncio.IncompleteReadError:
                        pass  # the session ended: reconnect, as the player does
                    finally:
                        if reader.returncode is None:
                            reader.kill()
                        await reader.wait()

            watching = asyncio.create_task(watch())
            try:
                await eventually(lambda: len(arrivals) >= 30 or watching.done(), "the viewer decodes pictures", 20)
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
                    seen = len(arrivals)
                    await eventually(lambda: len(arrivals) >= seen + 30 or watching.done(),
                                     "the viewer decodes the new encoder's pictures", 20)
                    assert not watching.done(), watching
            finally:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
    around = [at for at in arrivals if at >= drained_at - 1]
    gap = max(b - a for a, b in zip(around, around[1:], strict=False))
    print(f"drain with the real MediaMTX: longest gap between a viewer's pictures {gap * 1000:.0f} ms "
          f"({sessions} RTSP session(s))")
    assert sessions == 1, "the viewer's session survived the change of publisher"
    assert gap < 2.0, f"the viewer went {gap:.2f} s without a picture"

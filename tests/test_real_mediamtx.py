"""The frame path against a real MediaMTX, wherever a binary is present.

Elsewhere the other tests stand in for it with protocol peers; these run automatically when
``mediamtx`` is on PATH, named by FRAMECAST_MEDIAMTX_BIN, or installed by
``framecast mediamtx install``.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx
import imageio_ffmpeg

from framecast.auth.service import AuthSettings
from framecast.auth.service import lifespan as auth_lifespan
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
from tests.support.real_mediamtx import needs_mediamtx, real_mediamtx
from tests.support.rtsp import free_port
from tests.support.services import running, wait_for_state

pytestmark = needs_mediamtx


async def test_publish_through_real_mediamtx_with_hook_auth(
    nats_server: NatsServer, bus: Bus, stream_id: str, tmp_path: Path
) -> None:
    store = await StateStore.open(bus, "test")
    auth_addr = f"127.0.0.1:{free_port()}"
    async with running("auth", AuthSettings(nats_url=nats_server.url, auth_addr=auth_addr,
                                            auth_key_dir=str(tmp_path / "keys")), auth_lifespan):
        async with real_mediamtx(tmp_path, auth_addr) as ports:
            rtsp = f"rtsp://127.0.0.1:{ports['rtsp']}"
            async with (
                running("encoder", EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=rtsp), encoder_lifespan),
                running("capture", CaptureSettings(nats_url=nats_server.url), capture_lifespan),
            ):
                await bus.request(subjects.STREAM_START,
                                  StartStream(stream_id=stream_id, source=TestPatternSource(),
                                              format=VideoFormat(width=320, height=240, fps=30)),
                                  Accepted, service="capture", timeout=10)
                await wait_for_state(store, stream_id, StreamState.PUBLISHING, timeout=30)

                service = await bus.request(subjects.AUTH_TOKEN_ISSUE, TokenRequest(role="service", subject="test"),
                                            TokenIssued, service="auth")
                async with httpx.AsyncClient(headers={"Authorization": f"Bearer {service.token}"}) as client:
                    path: dict = {}  # type: ignore[type-arg]

                    async def ready() -> bool:
                        nonlocal path
                        answer = await client.get(f"http://127.0.0.1:{ports['api']}/v3/paths/get/{stream_id}")
                        path = answer.json() if answer.status_code == 200 else {}
                        return bool(path.get("available") or path.get("ready"))

                    for _ in range(100):
                        if await ready():
                            break
                        await asyncio.sleep(0.1)
                    assert path.get("available") or path.get("ready"), path
                    codecs = [t.get("codec") for t in path.get("tracks2", [])] or path.get("tracks", [])
                    assert any("264" in str(c) for c in codecs)

                    anonymous = await client.get(f"http://127.0.0.1:{ports['api']}/v3/paths/list",
                                                 headers={"Authorization": ""})
                    assert anonymous.status_code == 401

                # Publishing without a token is refused by the hook.
                intruder = subprocess.run(
                    [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                     "testsrc=size=160x120:rate=10", "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                     "-f", "rtsp", "-rtsp_transport", "tcp", f"{rtsp}/{stream_id}-intruder"],
                    capture_output=True, text=True, timeout=60,
                )
                assert intruder.returncode != 0
                assert "401" in intruder.stderr or "Unauthorized" in intruder.stderr

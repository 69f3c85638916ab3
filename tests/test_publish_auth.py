"""The encoder's RTSP publish with its short-lived token, at an ingest that authenticates as MediaMTX.

Every default install publishes with a token (``FRAMECAST_PUBLISH_AUTH=token``). These tests run
the real auth service and encoder against the RTSP gate, which asks the hook exactly as
MediaMTX does, so a token that cannot reach the hook whole fails here, with or without a
MediaMTX binary.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import imageio_ffmpeg

from framecast.auth import AuthSettings
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
from tests.support.rtsp import RtspReceiver, free_port
from tests.support.services import running, wait_for_state


async def _publish(url: str) -> tuple[int, str]:
    """One second of FFmpeg's test source published to ``url``: (exit code, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
        "testsrc=size=160x120:rate=10", "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
        "-f", "rtsp", "-rtsp_transport", "tcp", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, err.decode(errors="replace")


async def test_the_encoder_publishes_with_its_token_where_the_hook_decides(
    nats_server: NatsServer, bus: Bus, stream_id: str, tmp_path: Path
) -> None:
    store = await StateStore.open(bus, "test")
    auth_addr = f"127.0.0.1:{free_port()}"
    hook = f"http://{auth_addr}/mediamtx/auth"
    async with (
        running("auth", AuthSettings(nats_url=nats_server.url, auth_addr=auth_addr,
                                     auth_key_dir=str(tmp_path / "keys")), auth_lifespan),
        RtspReceiver(width=320, height=240, path=stream_id, hook_url=hook) as rx,
        running("encoder", EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{rx.port}"),
                encoder_lifespan),
        running("capture", CaptureSettings(nats_url=nats_server.url), capture_lifespan),
    ):
        await bus.request(subjects.STREAM_START,
                          StartStream(stream_id=stream_id, source=TestPatternSource(),
                                      format=VideoFormat(width=320, height=240, fps=30)),
                          Accepted, service="capture", timeout=10)
        await wait_for_state(store, stream_id, StreamState.PUBLISHING, timeout=30)
        await rx.wait_frames(10, timeout=20)

    first = rx.gate.hook_calls[0]
    assert first["action"] == "publish" and first["path"] == stream_id and first["protocol"] == "rtsp"
    assert first["user"] == first["password"] == ""
    assert first["query"] == f"token={first['token']}" and first["token"].count(".") == 2  # the whole JWT
    assert rx.gate.decisions[0] is True


async def test_a_token_in_the_rtsp_password_arrives_cut_and_is_refused(
    nats_server: NatsServer, bus: Bus, stream_id: str, tmp_path: Path
) -> None:
    """Why the token travels in the query: FFmpeg keeps 127 bytes of ``user:password``."""
    auth_addr = f"127.0.0.1:{free_port()}"
    async with running("auth", AuthSettings(nats_url=nats_server.url, auth_addr=auth_addr,
                                            auth_key_dir=str(tmp_path / "keys")), auth_lifespan):
        issued = await bus.request(subjects.AUTH_TOKEN_ISSUE,
                                   TokenRequest(role="publisher", stream_id=stream_id, subject="test"),
                                   TokenIssued, service="auth")
        async with RtspReceiver(width=160, height=120, path=stream_id,
                                hook_url=f"http://{auth_addr}/mediamtx/auth") as rx:
            rx.gate.reject_delay_s = (0.0, 0.0)
            code, err = await _publish(f"rtsp://framecast:{issued.token}@127.0.0.1:{rx.port}/{stream_id}")
            assert code != 0 and "401" in err
            challenge, retry = rx.gate.hook_calls
            assert challenge["token"] == "" and rx.gate.decisions[0] is False  # answered with the challenge
            assert len(retry["token"]) < len(issued.token) and issued.token.startswith(retry["token"])

            code, _ = await _publish(f"rtsp://127.0.0.1:{rx.port}/{stream_id}?token={issued.token}")
            assert code == 0 and rx.gate.decisions[-1] is True
            assert rx.gate.hook_calls[-1]["token"] == issued.token


async def test_a_publisher_without_a_token_is_challenged_then_refused(
    nats_server: NatsServer, stream_id: str, tmp_path: Path
) -> None:
    auth_addr = f"127.0.0.1:{free_port()}"
    async with (
        running("auth", AuthSettings(nats_url=nats_server.url, auth_addr=auth_addr,
                                     auth_key_dir=str(tmp_path / "keys")), auth_lifespan),
        RtspReceiver(width=160, height=120, path=stream_id, hook_url=f"http://{auth_addr}/mediamtx/auth") as rx,
    ):
        code, err = await _publish(f"rtsp://127.0.0.1:{rx.port}/{stream_id}")
        assert code != 0 and "401" in err
        # FFmpeg retries the challenge once with an empty Basic header; MediaMTX challenges again
        assert rx.gate.decisions and not any(rx.gate.decisions) and rx.connections == 0
        assert all(call["token"] == call["user"] == "" for call in rx.gate.hook_calls)

"""The auth service down and back while a stream is on air.

What runs keeps running: an FFmpeg already publishing was authorised when it started, and
MediaMTX never asks again (docs/mediamtx.md, "Auth hook"). What needs auth waits for it and
recovers by itself: an FFmpeg that restarts meanwhile is refused by the ingest (the hook cannot
be reached), the stream says so, and publishes again once auth is back.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from framecast.auth import AuthSettings
from framecast.auth import lifespan as auth_lifespan
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.proto.bus import Bus
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from tests.support.rtsp import RtspReceiver, free_port
from tests.support.services import cv_worker, running, wait_for_state
from tests.test_nats_outage import ffmpeg_publishing

S = StreamState


async def test_a_stream_rides_out_an_auth_outage_and_recovers_by_itself(
    nats_server: NatsServer, bus: Bus, stream_id: str, tmp_path: Path
) -> None:
    store = await StateStore.open(bus, "test")
    auth_addr = f"127.0.0.1:{free_port()}"
    auth = AuthSettings(nats_url=nats_server.url, auth_addr=auth_addr, auth_key_dir=str(tmp_path / "keys"))
    async with (
        RtspReceiver(width=320, height=240, path=stream_id, hook_url=f"http://{auth_addr}/mediamtx/auth") as rx,
        contextlib.AsyncExitStack() as stack,
    ):
        await stack.enter_async_context(running("auth", auth, auth_lifespan))
        async with (
            running("encoder", EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{rx.port}"),
                    encoder_lifespan),
            cv_worker(nats_server.url, stream_id),
        ):
            await wait_for_state(store, stream_id, S.PUBLISHING, timeout=30)
            await rx.wait_frames(30, timeout=20)

            await stack.aclose()  # auth stops
            seen = rx.received
            await rx.wait_frames(seen + 60, timeout=15)  # the running FFmpeg is still on air

            pid = ffmpeg_publishing(stream_id)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            stalled = await wait_for_state(store, stream_id, S.STALLED, timeout=20,
                                           where=lambda r: "401" in r.reason or "refused" in r.reason)
            assert "retrying" in stalled.reason  # it says what happens next, and does it

            await stack.enter_async_context(running("auth", auth, auth_lifespan))  # auth is back
            await wait_for_state(store, stream_id, S.PUBLISHING, timeout=30)
            seen = rx.received
            await rx.wait_frames(seen + 30, timeout=20)
            assert rx.connections >= 2

"""Each stream's MediaMTX path entry (framecast.encoder.paths) against stand-ins: an RTSP receiver
where FFmpeg publishes and a stand-in control API. The entry is there before the stream is on
air and gone when it ends; without a control API the stream publishes all the same.
tests/test_drain_real_mediamtx.py shows what the entry is for, with the real MediaMTX."""

from __future__ import annotations

from pathlib import Path

from framecast.auth import AuthSettings
from framecast.auth import lifespan as auth_lifespan
from framecast.devstack.nats import NatsServer
from framecast.encoder.paths import STREAM_PATH
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.proto.bus import Bus
from framecast.proto.states import StreamState as S
from framecast.proto.store import StateStore
from tests.support.fake_mediamtx import FakeMediaMTX
from tests.support.rtsp import RtspReceiver, free_port
from tests.support.services import cv_worker, eventually, running, wait_for_state

W, H = 320, 240


async def test_a_streams_path_entry_is_added_before_it_publishes_and_deleted_when_it_ends(
    nats_server: NatsServer, bus: Bus, stream_id: str, tmp_path: Path,
) -> None:
    store = await StateStore.open(bus, "test")
    async with (
        RtspReceiver(width=W, height=H, path=stream_id) as receiver,
        FakeMediaMTX() as api,
        running("auth", AuthSettings(nats_url=nats_server.url, auth_addr=f"127.0.0.1:{free_port()}",
                                     auth_key_dir=str(tmp_path / "keys")), auth_lifespan),
        running("encoder", EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{receiver.port}",
                                           mediamtx_api=api.url, publish_auth="none"), encoder_lifespan),
    ):
        async with cv_worker(nats_server.url, stream_id, width=W, height=H):
            await wait_for_state(store, stream_id, S.PUBLISHING, timeout=30)
            assert api.path_configs == {stream_id: STREAM_PATH}
            assert api.authorizations[-1] is not None and api.authorizations[-1].startswith("Bearer "), (
                "asked with a service token")
            await receiver.wait_frames(5, timeout=20)
        await wait_for_state(store, stream_id, S.STOPPED, timeout=20)
        await eventually(lambda: stream_id not in api.path_configs, "the ended stream's entry is deleted", 10)


async def test_without_a_control_api_the_stream_publishes_all_the_same(
    nats_server: NatsServer, bus: Bus, stream_id: str,
) -> None:
    store = await StateStore.open(bus, "test")
    async with (
        RtspReceiver(width=W, height=H, path=stream_id) as receiver,
        running("encoder", EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{receiver.port}",
                                           mediamtx_api=f"http://127.0.0.1:{free_port()}", publish_auth="none"),
                encoder_lifespan),
        cv_worker(nats_server.url, stream_id, width=W, height=H),
    ):
        await wait_for_state(store, stream_id, S.PUBLISHING, timeout=30)
        await receiver.wait_frames(5, timeout=20)

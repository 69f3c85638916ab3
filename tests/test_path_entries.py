"""Each stream's MediaMTX path entry (framecast.encoder.paths) against stand-ins: an RTSP receiver
where FFmpeg publishes and a stand-in control API. The entry is there before the stream is on
air and gone when it ends; without a control API the stream publishes all the same. The node's
count of bytes received on the path is also where the encoder's bitrate figure comes from.
tests/test_drain_real_mediamtx.py shows what the entry is for, with the real MediaMTX."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from framecast.auth import AuthSettings
from framecast.auth import lifespan as auth_lifespan
from framecast.devstack.nats import NatsServer
from framecast.encoder.paths import STREAM_PATH
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import StreamStats
from framecast.proto.states import StreamState as S
from framecast.proto.store import StateStore
from tests.support.fake_mediamtx import FakeMediaMTX
from tests.support.rtsp import RtspReceiver, free_port
from tests.support.services import cv_worker, eventually, running, wait_for_state

W, H = 320, 240


@contextlib.asynccontextmanager
async def encoder_beside_stand_ins(nats_server: NatsServer, stream_id: str, tmp_path: Path,
                                   **fields: Any) -> AsyncIterator[tuple[RtspReceiver, FakeMediaMTX]]:
    """Auth and the encoder, publishing to an RTSP receiver with a stand-in control API beside it."""
    async with (
        RtspReceiver(width=W, height=H, path=stream_id) as receiver,
        FakeMediaMTX() as api,
        running("auth", AuthSettings(nats_url=nats_server.url, auth_addr=f"127.0.0.1:{free_port()}",
                                     auth_key_dir=str(tmp_path / "keys")), auth_lifespan),
        running("encoder", EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{receiver.port}",
                                           mediamtx_api=api.url, publish_auth="none", **fields), encoder_lifespan),
    ):
        yield receiver, api


async def test_a_streams_path_entry_is_added_before_it_publishes_and_deleted_when_it_ends(
    nats_server: NatsServer, bus: Bus, stream_id: str, tmp_path: Path,
) -> None:
    store = await StateStore.open(bus, "test")
    async with encoder_beside_stand_ins(nats_server, stream_id, tmp_path) as (receiver, api):
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


async def test_the_encoder_reports_the_bitrate_mediamtx_receives(
    nats_server: NatsServer, bus: Bus, stream_id: str, tmp_path: Path,
) -> None:
    """FFmpeg counts no bytes for RTSP; the stand-in's path counts 100,000 bytes a second (800 kbit/s)."""
    store = await StateStore.open(bus, "test")
    reports: asyncio.Queue[StreamStats] = asyncio.Queue()

    async def on_stats(stats: StreamStats, _msg: object) -> None:
        reports.put_nowait(stats)

    async with (
        encoder_beside_stand_ins(nats_server, stream_id, tmp_path, stats_s=0.2) as (_, api),
        cv_worker(nats_server.url, stream_id, width=W, height=H),
    ):
        await wait_for_state(store, stream_id, S.PUBLISHING, timeout=30)
        path = api.add_path(stream_id)
        began = time.monotonic()

        async def count() -> None:
            while True:
                path["inboundBytes"] = int((time.monotonic() - began) * 100_000)
                await asyncio.sleep(0.005)  # the stand-in's counter, advancing as MediaMTX's does

        counting = asyncio.create_task(count())
        sub = await bus.subscribe(subjects.stats(stream_id), StreamStats, on_stats)
        try:
            rates = [(await asyncio.wait_for(reports.get(), 10)).bitrate_kbps for _ in range(6)]
        finally:
            counting.cancel()
            await sub.unsubscribe()
    assert 500 < statistics.median(rates[1:]) < 1300, f"about 800 kbit/s, in kbit/s: {rates}"

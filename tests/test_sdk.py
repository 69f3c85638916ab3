"""The SDK a CV worker uses, through a real encoder: frames in, frames out at the RTSP receiver.

The SDK's own checks and errors are tested beside capture (services/capture/tests/test_sdk.py)."""

from __future__ import annotations

import asyncio
import glob

import numpy as np
import pytest

import framecast.capture
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.frames.pattern import TestPattern, read_stamp
from framecast.proto.bus import Bus
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from tests.support.rtsp import RtspReceiver
from tests.support.services import running, wait_for_state

S = StreamState
W, H = 320, 240


def _frames(count: int):  # type: ignore[no-untyped-def]
    pattern = TestPattern(W, H)
    for n in range(1, count + 1):
        yield n, pattern.render(n, 1_700_000_000_000 + n)


@pytest.mark.parametrize("transport", ["shm", "nats"])
async def test_sdk_frames_arrive_in_order(nats_server: NatsServer, bus: Bus, stream_id: str, transport: str) -> None:
    store = await StateStore.open(bus, "test")
    async with RtspReceiver(width=W, height=H, path=stream_id) as rx:
        settings = EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{rx.port}",
                                   publish_auth="none")
        async with running("encoder", settings, encoder_lifespan):
            async with framecast.capture.open(stream_id, width=W, height=H, fps=30, transport=transport,
                                              nats_url=nats_server.url, metadata={"model": "v9"}) as stream:
                record = await wait_for_state(store, stream_id, S.STARTING, S.PUBLISHING)
                assert record.metadata == {"model": "v9"}
                for n, frame in _frames(90):
                    await stream.send(frame)
                    await asyncio.sleep(1 / 30)  # a CV loop producing 30 frames a second
                    if n == 30:
                        await wait_for_state(store, stream_id, S.PUBLISHING)
                received = await rx.wait_frames(30, timeout=15)
            stamps = [read_stamp(np.asarray(f.image)) for f in received]
            numbers = [s.frame_no for s in stamps if s is not None]
            assert len(numbers) >= 25
            assert numbers == sorted(numbers)
            assert numbers[-1] >= 60
            final = await wait_for_state(store, stream_id, S.STOPPED)
            assert final.reason == "producer finished"
    assert not glob.glob(f"/dev/shm/framecast-{stream_id}-*")

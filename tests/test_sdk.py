"""The SDK a CV worker uses: frames in, frames out at the RTSP receiver, clear errors."""

from __future__ import annotations

import asyncio
import glob

import numpy as np
import pytest

import framecast.capture
from framecast.capture import FrameFormatError, FrameTooLargeError, StreamClosed
from framecast.capture.service import lifespan as capture_lifespan
from framecast.capture.settings import CaptureSettings
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.frames.pattern import TestPattern, read_stamp
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import Accepted, StopStream
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


def test_sync_sdk_rejects_wrong_frames_with_expected_and_received(nats_server: NatsServer, stream_id: str) -> None:
    with framecast.capture.open(stream_id, width=W, height=H, nats_url=nats_server.url) as stream:
        with pytest.raises(FrameFormatError) as caught:
            stream.send(np.zeros((H, W + 2, 3), np.uint8))
        assert f"({H}, {W + 2}, 3)" in str(caught.value) and f"({H}, {W}, 3)" in str(caught.value)
        with pytest.raises(FrameFormatError, match="float32"):
            stream.send(np.zeros((H, W, 3), np.float32))
        with pytest.raises(FrameFormatError):
            stream.send(np.zeros((H, W), np.uint8))
        assert stream.send(np.zeros((H, W, 3), np.uint8)) == 1  # still usable after bad frames
        stream.set_metadata(model="yolo-v9", detections="3")
        assert stream.producer.metadata == {"model": "yolo-v9", "detections": "3"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 641, "height": 360}, "width"),
        ({"width": 640, "height": 8}, "height"),
        ({"width": 640, "height": 360, "fps": 0}, "fps"),
        ({"width": 640, "height": 360, "pix_fmt": "rgba"}, "pix_fmt"),
    ],
)
def test_bad_stream_format_is_refused_before_connecting(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValueError, match=message):
        framecast.capture.open("cam1", nats_url="nats://127.0.0.1:1", **kwargs)


def test_bad_stream_id_is_refused() -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        framecast.capture.open("cam 1/../x", width=640, height=360)


async def test_nats_transport_refuses_frames_over_max_payload(stream_id: str) -> None:
    small = await NatsServer(max_payload=65536).start()
    try:
        async with framecast.capture.open(stream_id, width=W, height=H, transport="nats",
                                          nats_url=small.url) as stream:
            with pytest.raises(FrameTooLargeError, match="max_payload"):
                await stream.send(np.zeros((H, W, 3), np.uint8))
    finally:
        await small.stop()


async def test_stopping_a_stream_makes_the_next_send_raise_with_the_reason(
    nats_server: NatsServer, bus: Bus, stream_id: str
) -> None:
    store = await StateStore.open(bus, "test")
    async with running("capture", CaptureSettings(nats_url=nats_server.url), capture_lifespan):
        async with framecast.capture.open(stream_id, width=W, height=H, nats_url=nats_server.url) as stream:
            await stream.send(np.zeros((H, W, 3), np.uint8))
            await bus.request(subjects.STREAM_STOP, StopStream(stream_id=stream_id, reason="operator said so"),
                              Accepted, service="capture")
            await wait_for_state(store, stream_id, S.STOPPING, S.STOPPED)
            await asyncio.wait_for(stream.producer.stop_requested.wait(), 5)
            with pytest.raises(StreamClosed, match="operator said so"):
                await stream.send(np.zeros((H, W, 3), np.uint8))
    record = await wait_for_state(store, stream_id, S.STOPPED)
    assert record.reason == "operator said so"

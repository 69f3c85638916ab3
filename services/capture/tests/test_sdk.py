"""The capture SDK on its own (NATS, no encoder): frame and argument checks, limits, stopping."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

import framecast.capture
from framecast.capture import FrameFormatError, FrameTooLargeError, StreamClosed
from framecast.capture.service import lifespan as capture_lifespan
from framecast.capture.settings import CaptureSettings
from framecast.devstack.nats import NatsServer
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import Accepted, StopStream
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from tests.support.services import running, wait_for_state

S = StreamState
W, H = 320, 240


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

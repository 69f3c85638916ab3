"""Capture's sources that it refuses, or that fail the stream, without an encoder."""

from __future__ import annotations

import asyncio

import pytest

from framecast.capture.service import lifespan as capture_lifespan
from framecast.capture.settings import CaptureSettings
from framecast.devstack.nats import NatsServer
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.errors import RequestRejected
from framecast.proto.messages import Accepted, FileSource, StartStream, UrlSource, VideoFormat
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from tests.support.services import running, wait_for_state

S = StreamState
FMT = VideoFormat(width=320, height=240, fps=25)


async def test_missing_file_is_refused_with_the_path(nats_server: NatsServer, bus: Bus, stream_id: str) -> None:
    async with running("capture", CaptureSettings(nats_url=nats_server.url), capture_lifespan):
        request = StartStream(stream_id=stream_id, source=FileSource(path="/nonexistent/clip.mp4"), format=FMT)
        with pytest.raises(RequestRejected) as caught:
            await bus.request(subjects.STREAM_START, request, Accepted, service="capture", timeout=10)
    assert caught.value.code == "bad_request" and "/nonexistent/clip.mp4 does not exist" in caught.value.message



async def test_unreadable_camera_url_fails_the_stream_with_a_scrubbed_reason(
    nats_server: NatsServer, bus: Bus, stream_id: str
) -> None:
    store = await StateStore.open(bus, "test")
    async with running("capture", CaptureSettings(nats_url=nats_server.url), capture_lifespan):
        source = UrlSource(url="rtsp://admin:hunter2@127.0.0.1:1/stream")
        await bus.request(subjects.STREAM_START, StartStream(stream_id=stream_id, source=source, format=FMT),
                          Accepted, service="capture", timeout=10)
        record = await wait_for_state(store, stream_id, S.FAILED, timeout=30)
    assert "camera URL" in record.reason
    assert "hunter2" not in record.reason
    await asyncio.sleep(0)

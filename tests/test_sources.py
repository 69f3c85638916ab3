"""Capture sources decoded through FFmpeg and published by a real encoder: a file (looped, real
time), a camera URL, a device. Sources capture refuses or fails are tested beside capture."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from framecast.capture.service import lifespan as capture_lifespan
from framecast.capture.settings import CaptureSettings
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import (
    Accepted,
    AnySource,
    DeviceSource,
    FileSource,
    StartStream,
    UrlSource,
    VideoFormat,
)
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from tests.support.rtsp import RtspReceiver
from tests.support.services import running, wait_for_state

S = StreamState
FMT = VideoFormat(width=320, height=240, fps=25)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two seconds of a moving test picture, 640x480 (the stream scales it to 320x240)."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
                    "-i", "testsrc2=size=640x480:rate=25", "-t", "2", "-pix_fmt", "yuv420p", "-c:v", "libx264",
                    "-preset", "ultrafast", "-movflags", "+faststart", str(path)], check=True, timeout=60)
    return path


@pytest.fixture
def http_camera(clip: Path) -> Iterator[str]:
    """The clip served over HTTP on loopback, as an IP camera's HTTP stream would be."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(clip.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{clip.name}"
    server.shutdown()


async def _publish(nats_server: NatsServer, bus: Bus, stream_id: str, source: AnySource,
                   frames: int = 60) -> list[np.ndarray]:
    store = await StateStore.open(bus, "test")
    async with RtspReceiver(width=FMT.width, height=FMT.height, path=stream_id) as rx:
        encoder = EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{rx.port}",
                                  publish_auth="none")
        async with (running("encoder", encoder, encoder_lifespan),
                    running("capture", CaptureSettings(nats_url=nats_server.url), capture_lifespan)):
            await bus.request(subjects.STREAM_START, StartStream(stream_id=stream_id, source=source, format=FMT),
                              Accepted, service="capture", timeout=10)
            await wait_for_state(store, stream_id, S.PUBLISHING)
            received = await rx.wait_frames(frames, timeout=20)
            return [np.asarray(f.image) for f in received]


async def test_file_source_loops_in_real_time(nats_server: NatsServer, bus: Bus, stream_id: str, clip: Path) -> None:
    images = await _publish(nats_server, bus, stream_id, FileSource(path=str(clip)), frames=60)  # past its end
    assert all(image.shape == (FMT.height, FMT.width) for image in images)
    changes = sum(not np.array_equal(a, b) for a, b in zip(images, images[1:]))
    assert changes > len(images) // 2, "the picture should move"


async def test_url_source_reads_an_http_camera(nats_server: NatsServer, bus: Bus, stream_id: str,
                                               http_camera: str) -> None:
    images = await _publish(nats_server, bus, stream_id, UrlSource(url=http_camera), frames=30)
    assert all(image.shape == (FMT.height, FMT.width) for image in images)


@pytest.mark.skipif(not os.path.exists("/dev/video0"), reason="no V4L2 camera at /dev/video0 on this machine")
async def test_device_source_reads_a_camera(nats_server: NatsServer, bus: Bus, stream_id: str) -> None:
    images = await _publish(nats_server, bus, stream_id, DeviceSource(device="/dev/video0"))
    assert len(images) >= 30

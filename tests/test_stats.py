"""Per-stream statistics: on NATS every few seconds, and as OpenTelemetry metrics."""

from __future__ import annotations

import asyncio
import time

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import framecast.capture
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.frames.pattern import TestPattern
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import StreamStats
from tests.support.rtsp import RtspReceiver
from tests.support.services import running


async def test_stats_reach_nats_and_metrics(
    nats_server: NatsServer, bus: Bus, stream_id: str, metric_reader: InMemoryMetricReader
) -> None:
    received: asyncio.Queue[StreamStats] = asyncio.Queue()

    async def on_stats(message: StreamStats, _msg: object) -> None:
        await received.put(message)

    await bus.subscribe(subjects.stats(stream_id), StreamStats, on_stats)
    async with RtspReceiver(width=320, height=240, path=stream_id) as rx:
        settings = EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{rx.port}",
                                   publish_auth="none", stats_s=0.5)
        async with running("encoder", settings, encoder_lifespan, instance="encoder-stats"):
            async with framecast.capture.open(stream_id, width=320, height=240, fps=30,
                                              nats_url=nats_server.url) as stream:
                pattern = TestPattern(320, 240)

                async def produce() -> None:
                    n = 0
                    while True:
                        n += 1
                        await stream.send(pattern.render(n, int(time.time() * 1000)))
                        await asyncio.sleep(1 / 30)

                producing = asyncio.create_task(produce())
                try:
                    while True:
                        stats = await asyncio.wait_for(received.get(), 10)
                        if stats.frames_out > 60:
                            break
                    data = metric_reader.get_metrics_data()  # while the stream is still encoded
                finally:
                    producing.cancel()
            # the stream ends: its last figures are sent once more, whole
            last = stats
            while not (final := await asyncio.wait_for(received.get(), 10)).final:
                last = final
    assert final.frames_out >= last.frames_out and final.frames_in >= last.frames_in
    assert final.frames_in == final.frames_out + final.dropped
    assert stats.encoder_id == "encoder-stats" and stats.encoder_kind == "libx264"
    assert 20 <= stats.fps_out <= 40
    assert stats.restarts == 0

    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert {"framecast.encoder.frames", "framecast.encoder.stream.fps_out",
            "framecast.encoder.stream.bitrate"} <= names

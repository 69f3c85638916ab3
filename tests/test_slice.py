"""The first vertical slice: a start request travels capture -> encoder -> FFmpeg -> RTSP.

An FFmpeg RTSP listener stands in for MediaMTX's ingest; frames are decoded back at the
receiver and their pattern stamps checked.
"""

from __future__ import annotations

import numpy as np
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from framecast.auth import AuthSettings
from framecast.auth import lifespan as auth_lifespan
from framecast.capture.service import lifespan as capture_lifespan
from framecast.capture.settings import CaptureSettings
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.frames.pattern import read_stamp
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import Accepted, StartStream, StopStream, TestPatternSource, VideoFormat
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from tests.support.rtsp import RtspReceiver
from tests.support.services import eventually, running, wait_for_state

S = StreamState


async def test_start_request_reaches_publishing_and_frames_arrive(
    nats_server, bus: Bus, stream_id: str, spans: InMemorySpanExporter, tmp_path, free_port: int,  # type: ignore[no-untyped-def]
    caplog,
) -> None:
    caplog.set_level("DEBUG")
    store = await StateStore.open(bus, "test")
    async with RtspReceiver(width=320, height=240, path=stream_id) as rx:
        base = f"rtsp://127.0.0.1:{rx.port}"
        async with (
            running("auth", AuthSettings(nats_url=nats_server.url, auth_addr=f"127.0.0.1:{free_port}",
                                         auth_key_dir=str(tmp_path / "keys")), auth_lifespan, instance="auth-1"),
            running("encoder", EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=base), encoder_lifespan,
                    instance="encoder-1"),
            running("capture", CaptureSettings(nats_url=nats_server.url), capture_lifespan, instance="capture-1"),
        ):
            request = StartStream(stream_id=stream_id, source=TestPatternSource(),
                                  format=VideoFormat(width=320, height=240, fps=30))
            with trace.get_tracer("test").start_as_current_span("operator starts a stream") as root:
                reply = await bus.request(subjects.STREAM_START, request, Accepted, service="capture", timeout=10)
            assert reply.stream.state is S.REQUESTED
            record = await wait_for_state(store, stream_id, S.PUBLISHING)
            assert record.encoder_kind == "libx264" and record.encoder_id == "encoder-1"

            # One trace: the request, capture's handling, the announce, the encoder's claim and
            # the transitions each service recorded, down to "publishing".
            trace_id = root.get_span_context().trace_id

            def traced(name: str) -> list:  # type: ignore[type-arg]
                return [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id and s.name == name]

            # requested (capture), starting and publishing (encoder), all in the operator's trace
            await eventually(lambda: len(traced(f"publish {subjects.events(stream_id)}")) >= 3,
                             "three transitions recorded in the request's trace")
            # the claim goes to the encoder placement chose (the queue group before any heartbeat)
            claims = [*traced(f"process {subjects.encoder_claim('encoder-1')}"),
                      *traced(f"process {subjects.ENCODER_CLAIM}")]
            consumers = {s.attributes["messaging.client.id"] for s in claims}
            consumers |= {s.attributes["messaging.client.id"] for s in traced(f"process {subjects.STREAM_START}")}
            consumers |= {s.attributes["messaging.client.id"] for s in traced(f"process {subjects.AUTH_TOKEN_ISSUE}")}
            assert consumers == {"capture-1", "encoder-1", "auth-1"}

            frames = await rx.wait_frames(15, timeout=15)
            stamps = [read_stamp(np.asarray(f.image)) for f in frames]
            numbers = [s.frame_no for s in stamps if s is not None]
            assert len(numbers) >= 10
            assert numbers == sorted(numbers)

            await bus.request(subjects.STREAM_STOP, StopStream(stream_id=stream_id), Accepted, service="capture")
            stopped = await wait_for_state(store, stream_id, S.STOPPED)
            assert stopped.state is S.STOPPED

    states = []
    async for _, event in store.history(stream_id):
        states.append(event.state)
        if event.state is S.STOPPED:
            break
    assert states[:3] == [S.REQUESTED, S.STARTING, S.PUBLISHING]
    assert states[-2:] == [S.STOPPING, S.STOPPED]
    assert "eyJ" not in caplog.text, "a token (JWT) reached a log line"

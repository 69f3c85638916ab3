"""Every bus message survives a round trip, and bad input is refused with the field named."""

from __future__ import annotations

import msgspec
import pytest

from framecast.proto import codec
from framecast.proto.catalog import CHANNELS
from framecast.proto.messages import (
    Accepted,
    AuthDecision,
    ClaimAccepted,
    DrainEncoder,
    Draining,
    EncoderHeartbeat,
    EncoderPing,
    FileSource,
    NatsTransport,
    Reassign,
    Rejected,
    ShmTransport,
    StartStream,
    StopStream,
    StreamAnnounce,
    StreamEnd,
    StreamRecord,
    StreamStats,
    StreamTransition,
    TestPatternSource,
    TokenIssued,
    TokenRequest,
    UrlSource,
    VideoFormat,
)
from framecast.proto.states import StreamState

FMT = VideoFormat(width=640, height=360, fps=30)
SAMPLES = [
    StartStream(stream_id="cam1", source=TestPatternSource(), format=FMT, metadata={"model": "yolo-v9"}),
    StartStream(stream_id="cam-2", source=FileSource(path="/v.mp4", loop=False), format=FMT, transport="nats"),
    StartStream(stream_id="c_3", source=UrlSource(url="rtsp://cam/1"), format=FMT),
    StopStream(stream_id="cam1", reason="operator"),
    Rejected(code="conflict", message="already running"),
    Accepted(stream=StreamRecord(stream_id="cam1", state=StreamState.REQUESTED, format=FMT)),
    StreamRecord(stream_id="cam1", state=StreamState.FAILED, reason="gave up", encoder_kind="libx264"),
    StreamTransition(stream_id="cam1", previous=None, state=StreamState.REQUESTED, at=1.5, revision=3),
    StreamAnnounce(stream_id="cam1", format=FMT, transport=ShmTransport(name="/framecast-cam1-ab", slots=4), capture_id="c"),
    StreamAnnounce(stream_id="cam1", format=FMT, transport=NatsTransport(subject="framecast.stream.cam1.frames"), capture_id="c"),
    ClaimAccepted(encoder_id="e1", encoder_kind="libx264"),
    EncoderHeartbeat(encoder_id="e1", streams=["cam1"], capacity=4, active=1, at=2.0),
    EncoderHeartbeat(encoder_id="e2", capacity=8, active=0, hw_sessions_left=3, at=2.0, host="gpu-1", draining=True),
    EncoderPing(asked_by="capture-1"),
    DrainEncoder(),
    Draining(encoder_id="e1", streams=["cam1", "cam2"]),
    Reassign(stream_id="cam1", from_encoder="e1", reason="drained by an operator"),
    StreamEnd(stream_id="cam1", reason="producer finished"),
    StreamStats(stream_id="cam1", encoder_id="e1", frames_in=10, dropped=2, at=3.0),
    TokenRequest(role="viewer", stream_id="cam1", ttl_s=300),
    TokenIssued(token="t", expires_at=4.0, kid="k1"),
    AuthDecision(at=5.0, action="read", path="cam1", protocol="webrtc", ip="::1", allowed=False, reason="expired"),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message: msgspec.Struct) -> None:
    data = codec.encode(message)
    assert codec.decode("subject", data, type(message)) == message


def test_every_catalogued_message_has_a_sample() -> None:
    catalogued = {t for c in CHANNELS for t in (*c.messages, *c.replies)}
    assert catalogued <= {type(m) for m in SAMPLES}


def test_every_message_tag_is_versioned_and_unique() -> None:
    tags = [msgspec.inspect.type_info(type(m)).tag for m in SAMPLES]
    assert all(t.startswith("framecast.") and t.rsplit(".", 1)[1].startswith("v") for t in tags)
    assert len(set(tags)) == len({type(m) for m in SAMPLES})


def test_unknown_fields_are_tolerated() -> None:
    data = b'{"type":"framecast.stream.end.v1","stream_id":"cam1","added_in_v2":[1,2]}'
    assert codec.decode("s", data, StreamEnd) == StreamEnd(stream_id="cam1")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"type":"framecast.stream.end.v1","stream_id":"has space"}', "stream_id"),
        (b'{"type":"framecast.stream.end.v1","stream_id":"a.b"}', "stream_id"),
        (b'{"type":"framecast.stream.end.v1"}', None),
        (b'{"type":"framecast.stream.end.v2","stream_id":"cam1"}', "type"),
        (b'{"type":"framecast.control.start.v1","stream_id":"c","source":{"kind":"webcam"},'
         b'"format":{"width":640,"height":360}}', "source.kind"),
        (b'{"type":"framecast.control.start.v1","stream_id":"c","source":{"kind":"testpattern"},'
         b'"format":{"width":641,"height":360}}', "format.width"),
        (b'{"type":"framecast.control.start.v1","stream_id":"c","source":{"kind":"testpattern"},'
         b'"format":{"width":640,"height":360,"pix_fmt":"rgba"}}', "format.pix_fmt"),
        (b"[1,2", None),
    ],
)
def test_bad_messages_raise_a_typed_error_naming_the_field(payload: bytes, field: str | None) -> None:
    with pytest.raises(codec.MessageDecodeError) as caught:
        codec.decode("framecast.control.stream.start", payload, StreamEnd | StartStream)
    assert caught.value.subject == "framecast.control.stream.start"
    assert caught.value.field == field
    assert "framecast.control.stream.start" in str(caught.value)


def test_missing_field_is_named_in_the_detail() -> None:
    with pytest.raises(codec.MessageDecodeError, match="stream_id"):
        codec.decode("s", b'{"type":"framecast.stream.end.v1"}', StreamEnd)


@pytest.mark.parametrize(
    ("fmt", "size", "shape"),
    [
        (VideoFormat(width=640, height=360), 691200, (360, 640, 3)),
        (VideoFormat(width=640, height=360, pix_fmt="gray"), 230400, (360, 640)),
        (VideoFormat(width=640, height=360, pix_fmt="yuv420p"), 345600, (540, 640)),
    ],
)
def test_frame_sizes(fmt: VideoFormat, size: int, shape: tuple[int, ...]) -> None:
    assert fmt.frame_size == size
    assert fmt.shape == shape

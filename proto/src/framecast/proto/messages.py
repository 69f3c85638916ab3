"""Every message framecast puts on NATS, as frozen msgspec Structs with versioned tags.

Schema rules (so older consumers survive newer producers): add fields only with defaults,
never rename or retype one; a breaking change gets a new tag (``….v2``). Unknown fields are
ignored when decoding.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from .errors import InvalidFormat
from .ids import STREAM_ID_PATTERN as STREAM_ID_PATTERN  # the rule lives in ids.py
from .states import StreamState

StreamId = Annotated[
    str,
    Meta(
        pattern=STREAM_ID_PATTERN,
        description="1-64 letters, digits, '_' or '-': a NATS token, a KV key and a MediaMTX path.",
    ),
]
MIN_SIZE, MAX_SIZE, MAX_FPS = 16, 7680, 240
PIX_FMTS = ("bgr24", "rgb24", "gray", "yuv420p")
Dimension = Annotated[int, Meta(ge=MIN_SIZE, le=MAX_SIZE, multiple_of=2, description="Even, 16-7680 px.")]
Fps = Annotated[int, Meta(ge=1, le=MAX_FPS)]
PixFmt = Literal["bgr24", "rgb24", "gray", "yuv420p"]
Metadata = Annotated[
    dict[str, str], Meta(max_length=32, description="Free-form labels carried with events.")
]
ErrorCode = Literal["bad_request", "not_found", "conflict", "forbidden", "unavailable", "internal"]


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Base of every bus message: frozen, keyword-only, tagged by ``type``."""


class VideoFormat(msgspec.Struct, frozen=True, kw_only=True):
    width: Dimension
    height: Dimension
    fps: Fps = 30
    pix_fmt: PixFmt = "bgr24"

    def __post_init__(self) -> None:
        """The same limits as the annotations, for a format made in Python too (msgspec checks
        annotations only when it decodes): a stream with an odd size must never be announced."""
        for name in ("width", "height"):
            value = getattr(self, name)
            if not (isinstance(value, int) and MIN_SIZE <= value <= MAX_SIZE and value % 2 == 0):
                raise InvalidFormat(f"{name} must be an even number of pixels from {MIN_SIZE} to {MAX_SIZE}, "
                                    f"got {value!r}")
        if not (isinstance(self.fps, int) and 1 <= self.fps <= MAX_FPS):
            raise InvalidFormat(f"fps must be from 1 to {MAX_FPS}, got {self.fps!r}")
        if self.pix_fmt not in PIX_FMTS:
            raise InvalidFormat(f"pix_fmt must be one of {', '.join(PIX_FMTS)}, got {self.pix_fmt!r}")

    @property
    def frame_size(self) -> int:
        """Bytes in one raw frame of this format."""
        pixels = self.width * self.height
        return {"bgr24": 3 * pixels, "rgb24": 3 * pixels, "gray": pixels}.get(
            self.pix_fmt, pixels * 3 // 2
        )

    @property
    def shape(self) -> tuple[int, ...]:
        """The numpy shape of one frame of this format."""
        if self.pix_fmt in ("bgr24", "rgb24"):
            return (self.height, self.width, 3)
        if self.pix_fmt == "gray":
            return (self.height, self.width)
        return (self.height * 3 // 2, self.width)


# ----- where frames come from -------------------------------------------------------------


class Source(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Base of the frame sources a capture instance can run."""


class TestPatternSource(Source, kw_only=True, tag="testpattern"):
    """Moving content with the frame number and wall-clock time encoded in pixel blocks."""


class FileSource(Source, kw_only=True, tag="file"):
    path: str
    loop: bool = True


class UrlSource(Source, kw_only=True, tag="url"):
    """An RTSP or HTTP camera. The URL may hold credentials: it is never logged or published."""

    url: str


class DeviceSource(Source, kw_only=True, tag="device"):
    device: str = "/dev/video0"


class SdkSource(Source, kw_only=True, tag="sdk"):
    """Frames pushed by a program through ``framecast.capture.open``."""


AnySource = TestPatternSource | FileSource | UrlSource | DeviceSource | SdkSource

#: The sources a person names on a command line, and what each one's input is ("": none).
SOURCE_INPUTS: dict[str, str] = {
    "testpattern": "",
    "file": "path",
    "url": "camera URL",
    "device": "e.g. /dev/video0",
}


def source_for(kind: str, input: str | None = None, *, loop: bool = True) -> AnySource:
    """The source description for a command line's ``kind`` and ``input`` (see SOURCE_INPUTS)."""
    if SOURCE_INPUTS.get(kind) and not input:
        raise ValueError(f"a {kind} source needs an input ({SOURCE_INPUTS[kind]})")
    match kind:
        case "testpattern":
            return TestPatternSource()
        case "file":
            return FileSource(path=input or "", loop=loop)
        case "url":
            return UrlSource(url=input or "")
        case "device":
            return DeviceSource(device=input or "")
    raise ValueError(f"unknown source {kind!r}: use one of {', '.join(SOURCE_INPUTS)}")


# ----- how frames travel from capture to encoder ------------------------------------------


class Transport(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Base of the frame transports between capture and encoder."""


class ShmTransport(Transport, kw_only=True, tag="shm"):
    """A shared-memory ring on the same host; ``name`` is the POSIX shm segment name."""

    name: str
    slots: int


class NatsTransport(Transport, kw_only=True, tag="nats"):
    """One NATS message per frame, on ``subjects.frames(stream_id)``."""

    subject: str


AnyTransport = ShmTransport | NatsTransport
TransportKind = Literal["shm", "nats"]
TransportChoice = Literal["auto", "shm", "nats"]
"""What a producer asks for: ``auto`` places the stream on an encoder of its own host when one
has room (shared memory), else on one elsewhere (NATS); ``shm`` and ``nats`` only that one."""


# ----- control: start and stop ------------------------------------------------------------


class StartStream(Message, kw_only=True, tag="framecast.control.start.v1"):
    stream_id: StreamId
    source: AnySource
    format: VideoFormat
    transport: TransportChoice = "auto"
    metadata: Metadata = {}


class StopStream(Message, kw_only=True, tag="framecast.control.stop.v1"):
    stream_id: StreamId
    reason: str = "stop requested"


class Rejected(Message, kw_only=True, tag="framecast.reply.rejected.v1"):
    """A request that was refused; ``message`` is meant for the person who asked."""

    code: ErrorCode
    message: str


# ----- state --------------------------------------------------------------------------------


class StreamRecord(Message, kw_only=True, tag="framecast.stream.state.v1"):
    """The current state of one stream, as kept in the state KV bucket."""

    stream_id: StreamId
    state: StreamState
    reason: str = ""
    since: float = 0.0
    updated_at: float = 0.0
    source: AnySource | None = None
    format: VideoFormat | None = None
    transport: TransportKind | None = None
    capture_id: str = ""
    encoder_id: str = ""
    encoder_kind: str = ""
    metadata: Metadata = {}
    cause: str = ""
    """While a failure is retried: that failure alone, without the retry wording of ``reason``."""
    attempt: int = 0
    """Which run of the stream's FFmpeg this is about (1: the first); 0 when none is."""
    retry_in_s: float | None = None
    """Seconds until the next retry (0.0: at once); None when nothing is being retried."""
    placement: str = ""
    """Why the stream runs on its encoder (which host, the transport, the encoder's free room)."""
    mediamtx_node: str = ""
    """The MediaMTX node it publishes to (``framecast.runtime.mediamtx_nodes``); empty: the only one."""


class StreamTransition(Message, kw_only=True, tag="framecast.stream.transition.v1"):
    """One accepted lifecycle move, appended to the events stream."""

    stream_id: StreamId
    previous: StreamState | None
    state: StreamState
    reason: str = ""
    actor: str = ""
    at: float
    revision: int = 0
    encoder_id: str = ""
    encoder_kind: str = ""
    metadata: Metadata = {}
    cause: str = ""
    """While a failure is retried: that failure alone, without the retry wording of ``reason``."""
    attempt: int = 0
    """Which run of the stream's FFmpeg this is about (1: the first); 0 when none is."""
    retry_in_s: float | None = None
    """Seconds until the next retry (0.0: at once); None when nothing is being retried."""


class Accepted(Message, kw_only=True, tag="framecast.reply.accepted.v1"):
    stream: StreamRecord


# ----- capture <-> encoder ------------------------------------------------------------------


class StreamAnnounce(Message, kw_only=True, tag="framecast.encoder.announce.v1"):
    """A producer asking the encoder queue group to take a stream."""

    stream_id: StreamId
    format: VideoFormat
    transport: AnyTransport
    capture_id: str
    metadata: Metadata = {}
    placement: str = ""
    """Why the producer chose this encoder (recorded with the claim, shown by ``stream list``)."""


class Reassign(Message, kw_only=True, tag="framecast.stream.reassign.v1"):
    """An encoder being drained asks a stream's producer to place the stream elsewhere."""

    stream_id: StreamId
    from_encoder: str
    reason: str = ""


class DrainEncoder(Message, kw_only=True, tag="framecast.encoder.drain.v1"):
    """An operator empties one encoder: it takes no new stream and hands its streams over."""

    reason: str = "drained by an operator"


class Draining(Message, kw_only=True, tag="framecast.encoder.draining.v1"):
    """The encoder's answer: the streams it is handing over."""

    encoder_id: str
    streams: list[str] = []


class EncoderPing(Message, kw_only=True, tag="framecast.encoder.ping.v1"):
    """Asks every encoder for a heartbeat now (a producer that has just started)."""

    asked_by: str = ""


class ClaimAccepted(Message, kw_only=True, tag="framecast.encoder.claimed.v1"):
    encoder_id: str
    encoder_kind: str


class EncoderHeartbeat(Message, kw_only=True, tag="framecast.encoder.heartbeat.v1"):
    encoder_id: str
    streams: list[str] = []
    capacity: int
    active: int
    hw_sessions_left: int | None = None
    at: float
    host: str = ""
    """Where the encoder runs, as far as shared memory goes: a producer with the same ``host``
    can hand it frames through a ring (``framecast.frames.host_identity``)."""
    draining: bool = False
    """The operator is emptying this encoder: it takes no new stream."""


class StreamEnd(Message, kw_only=True, tag="framecast.stream.end.v1"):
    """The producer has finished (or is gone): the encoder should stop."""

    stream_id: StreamId
    reason: str = ""


class StreamStats(Message, kw_only=True, tag="framecast.stream.stats.v1"):
    stream_id: StreamId
    encoder_id: str
    encoder_kind: str = ""
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0
    repeated: int = 0
    restarts: int = 0
    fps_in: float = 0.0
    fps_out: float = 0.0
    bitrate_kbps: float = 0.0
    """kbit/s the MediaMTX node received for the stream since the previous report (FFmpeg counts
    no bytes for RTSP); 0 in a stream's first report, or where the node's control API does not answer."""
    speed: float = 0.0
    at: float
    final: bool = False
    """The last statistics of this encoder's run of the stream, sent when it ends."""


# ----- auth ----------------------------------------------------------------------------------


class TokenRequest(Message, kw_only=True, tag="framecast.auth.token.request.v1"):
    """A service asking the auth service for a MediaMTX token: for one stream (viewer,
    publisher), or for MediaMTX's control API (service, no stream)."""

    role: Literal["viewer", "publisher", "service"]
    stream_id: StreamId | None = None
    ttl_s: Annotated[int, Meta(ge=10, le=86400)] | None = None
    subject: str = ""


class TokenIssued(Message, kw_only=True, tag="framecast.auth.token.issued.v1"):
    """A signed token. It is a secret: never log this message."""

    token: str
    expires_at: float
    """When it expires, on the auth service's clock."""
    kid: str
    valid_for_s: float | None = None
    """How long it stays valid from the moment it was issued: the same on every clock, so a
    holder whose wall clock differs from auth's counts this down instead of reading
    ``expires_at`` (``framecast.runtime.lease``). None from an auth service older than it."""


class AuthDecision(Message, kw_only=True, tag="framecast.auth.decision.v1"):
    """One answer of the MediaMTX auth hook, for the audit trail (never carries the token)."""

    at: float
    action: str
    path: str
    protocol: str
    ip: str
    allowed: bool
    reason: str
    subject: str = ""
    jti: str = ""


# ----- one union per subject (what a subscriber decodes) --------------------------------------

StartReply = Accepted | Rejected
StopReply = Accepted | Rejected
ClaimReply = ClaimAccepted | Rejected
TokenReply = TokenIssued | Rejected
StreamControl = StopStream | StreamEnd | Reassign

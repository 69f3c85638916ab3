"""Which messages travel on which subject, who sends them and who answers: the bus's map.

The AsyncAPI document is generated from this table, so it cannot drift from the code that
publishes; ``subjects`` holds the names, this module the meaning.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import subjects
from .messages import (
    Accepted,
    AuthDecision,
    ClaimAccepted,
    DrainEncoder,
    Draining,
    EncoderHeartbeat,
    EncoderPing,
    Reassign,
    Rejected,
    StartStream,
    StopStream,
    StreamAnnounce,
    StreamEnd,
    StreamRecord,
    StreamStats,
    StreamTransition,
    TokenIssued,
    TokenRequest,
)


class Channel(NamedTuple):
    key: str
    address: str
    messages: tuple[type[Any], ...]
    description: str
    senders: str
    receivers: str
    replies: tuple[type[Any], ...] = ()
    queue: str = ""


STREAM = "{stream_id}"

CHANNELS: tuple[Channel, ...] = (
    Channel("streamStart", subjects.STREAM_START, (StartStream,),
            "Start a stream from a capture source.", "gateway, framecast stream", "capture",
            (Accepted, Rejected), subjects.CAPTURE_QUEUE),
    Channel("streamStop", subjects.STREAM_STOP, (StopStream,),
            "Stop a stream.", "gateway, framecast stream", "capture",
            (Accepted, Rejected), subjects.CAPTURE_QUEUE),
    Channel("encoderClaim", subjects.ENCODER_CLAIM, (StreamAnnounce,),
            "A producer of the version before placement announces a stream; one encoder of the "
            "queue group claims it or refuses.",
            "capture (service and SDK)", "encoder", (ClaimAccepted, Rejected), subjects.ENCODER_QUEUE),
    Channel("encoderClaimDirect", subjects.encoder_claim("{encoder_id}"), (StreamAnnounce,),
            "A producer asks the encoder its placement chose to claim a stream (it claims or refuses).",
            "capture (service and SDK)", "encoder", (ClaimAccepted, Rejected)),
    Channel("encoderDrain", subjects.encoder_drain("{encoder_id}"), (DrainEncoder,),
            "Empty one encoder: it takes no new stream and asks each of its producers to place the "
            "stream elsewhere.", "framecast encoder drain", "encoder", (Draining,)),
    Channel("encoderPing", subjects.ENCODER_PING, (EncoderPing,),
            "Every encoder answers with a heartbeat at once (a new producer learns the fleet).",
            "capture (service and SDK)", "encoder"),
    Channel("encoderHeartbeat", subjects.encoder_heartbeat("{encoder_id}"), (EncoderHeartbeat,),
            "Liveness, host and capacity of one encoder instance, twice a second.",
            "encoder", "capture (service and SDK), gateway"),
    Channel("streamControl", subjects.stream_control(STREAM), (StopStream, StreamEnd, Reassign),
            "Per-stream control: StopStream tells the producer to stop; StreamEnd tells the encoder "
            "that the producer has finished; Reassign, from a draining encoder, asks the producer to "
            "place the stream on another encoder.", "capture, encoder", "capture (service and SDK), encoder"),
    Channel("streamFrames", subjects.frames(STREAM), (),
            "Raw frames of a stream on the NATS transport: the payload is the frame's bytes, "
            "headers Framecast-Seq and Framecast-Timestamp-Ns.", "capture", "encoder"),
    Channel("streamStats", subjects.stats(STREAM), (StreamStats,),
            "Encoder statistics of one stream, every few seconds.", "encoder", "gateway"),
    Channel("streamEvents", subjects.events(STREAM), (StreamTransition,),
            f"Every accepted lifecycle transition; kept in JetStream stream {subjects.EVENTS_STREAM}.",
            "capture, encoder, gateway", "gateway, framecast stream"),
    Channel("streamState", subjects.state_key(STREAM), (StreamRecord,),
            f"Current state of each stream: JetStream key-value bucket {subjects.STATE_BUCKET}.",
            "capture, encoder, gateway", "gateway, framecast stream"),
    Channel("authTokenIssue", subjects.AUTH_TOKEN_ISSUE, (TokenRequest,),
            "A service asks for a viewer or publisher token for one stream.", "gateway, encoder", "auth",
            (TokenIssued, Rejected), subjects.AUTH_QUEUE),
    Channel("authAudit", subjects.AUTH_AUDIT, (AuthDecision,),
            "Every decision of the MediaMTX auth hook (never the token).", "auth", "operators"),
)

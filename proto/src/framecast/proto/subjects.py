"""Every NATS subject framecast uses, in one place, so no other module spells one out.

Per-stream subjects put the stream id in one token; stream ids are restricted (see
``ids.STREAM_ID_PATTERN``) so that an id is always a single valid subject token, a valid
JetStream KV key and a valid MediaMTX path.
"""

from __future__ import annotations

PREFIX = "framecast"

# Control plane: requests to start and stop streams (answered by a capture instance).
STREAM_START = f"{PREFIX}.control.stream.start"
STREAM_STOP = f"{PREFIX}.control.stream.stop"
CAPTURE_QUEUE = "capture"

# Encoders claim announced streams: a producer asks the encoder it placed the stream on
# (``encoder_claim(id)``); producers of the version before placement ask the queue group.
ENCODER_CLAIM = f"{PREFIX}.encoder.claim"
ENCODER_QUEUE = "encoders"

# Auth: token issuance (request/reply) and the audit trail of every hook decision.
AUTH_TOKEN_ISSUE = f"{PREFIX}.auth.token.issue"
AUTH_QUEUE = "auth"
AUTH_AUDIT = f"{PREFIX}.auth.audit"

# Lifecycle history: every accepted state transition is published here and kept by JetStream.
EVENTS_STREAM = "FRAMECAST_EVENTS"
EVENTS_ALL = f"{PREFIX}.events.stream.*"

# Current state of every stream: a JetStream key-value bucket keyed by stream id.
STATE_BUCKET = "framecast_streams"
REVOKED_BUCKET = "framecast_revoked"
"""The KV bucket of revoked token ids (auth writes and mirrors it)."""

# Per-stream frame and status subjects, wildcard forms for subscribers of every stream.
STATS_ALL = f"{PREFIX}.stream.*.stats"


def events(stream_id: str) -> str:
    """Lifecycle transitions of one stream (persisted in ``EVENTS_STREAM``)."""
    return f"{PREFIX}.events.stream.{stream_id}"


def frames(stream_id: str) -> str:
    """Raw frames of one stream when it uses the NATS transport (one message per frame)."""
    return f"{PREFIX}.stream.{stream_id}.frames"


def stream_control(stream_id: str) -> str:
    """Per-stream control: stop requests to its producer, end of stream to its encoder."""
    return f"{PREFIX}.stream.{stream_id}.control"


def stats(stream_id: str) -> str:
    """Periodic encoder statistics of one stream."""
    return f"{PREFIX}.stream.{stream_id}.stats"


def encoder_claim(encoder_id: str) -> str:
    """Announces addressed to one encoder instance: the one placement chose."""
    return f"{ENCODER_CLAIM}.{encoder_id}"


def encoder_drain(encoder_id: str) -> str:
    """An operator's request that one encoder hand its streams over and take no more."""
    return f"{PREFIX}.encoder.drain.{encoder_id}"


ENCODER_HEARTBEAT_ALL = f"{PREFIX}.encoder.heartbeat.*"
ENCODER_PING = f"{PREFIX}.encoder.ping"
"""Every encoder answers a message here with a heartbeat at once: a producer that has just
started learns the whole fleet in a round trip instead of a heartbeat period."""


def encoder_heartbeat(encoder_id: str) -> str:
    """Liveness and capacity of one encoder instance."""
    return f"{PREFIX}.encoder.heartbeat.{encoder_id}"


def state_key(stream_id: str) -> str:
    """The subject of one stream's entry in the state bucket (``STATE_BUCKET``, key = stream id)."""
    return f"$KV.{STATE_BUCKET}.{stream_id}"


def inbox_prefix(user: str) -> str:
    """The reply inboxes of NATS user ``user``: named after the user, so that NATS permissions
    can let each user read its own replies only (deploy/nats/users.conf)."""
    return f"_INBOX.{user}"


def stream_id_of(subject: str) -> str:
    """The stream id token of a per-stream subject (``framecast.<kind>.stream.<id>...``)."""
    tokens = subject.split(".")
    if len(tokens) >= 4 and tokens[1] == "events":
        return tokens[3]
    if len(tokens) >= 3 and tokens[1] == "stream":
        return tokens[2]
    raise ValueError(f"{subject!r} is not a per-stream subject")

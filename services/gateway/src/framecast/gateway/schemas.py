"""The gateway HTTP API's request and response types, and how a stream record becomes a response.

The routes (``routes.py``) take and return these; the OpenAPI document at /schema is generated
from them, so a field's docstring here is what an API caller reads.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import msgspec

from framecast.proto.messages import (
    AnySource,
    DeviceSource,
    Dimension,
    FileSource,
    Fps,
    StreamId,
    StreamRecord,
    TestPatternSource,
    TransportChoice,
    UrlSource,
    VideoFormat,
)
from framecast.proto.states import StreamState
from framecast.runtime.health import Health

from .events import MediaMTXStatus, StateView

__all__ = ["Playback", "Readiness", "StartRequest", "StatsView", "StreamView", "stream_view"]



class StatsView(msgspec.Struct, kw_only=True):
    """The encoder's latest report on a stream (sent about every two seconds)."""

    encoder_id: str
    fps_in: float
    fps_out: float
    dropped: int
    repeated: int
    restarts: int
    frames_in: int
    frames_out: int
    bitrate_kbps: float
    speed: float
    at: float


class StreamView(msgspec.Struct, kw_only=True):
    """One stream: its lifecycle state from the state bucket, the encoder's numbers, and what
    MediaMTX reports (``mediamtx`` says whether that part could be read at all)."""

    stream_id: str
    state: StreamState
    reason: str
    source: AnySource | None
    format: VideoFormat | None
    encoder_id: str
    encoder_kind: str
    transport: str
    """How its frames reach the encoder: ``shm`` (same host) or ``nats``; empty until placed."""
    placement: str
    """Why the stream runs on its encoder: host, transport, the encoder's free room."""
    mediamtx_node: str
    """The MediaMTX node it publishes to (empty with one node)."""
    stats: StatsView | None
    readers: int
    codec: str
    profile: str
    mediamtx: MediaMTXStatus
    metadata: dict[str, str]
    updated_at: float


class StartRequest(msgspec.Struct, kw_only=True):
    """What to start: a stream id, a frame source that capture can run, and the frame format."""

    stream_id: StreamId
    source: TestPatternSource | FileSource | UrlSource | DeviceSource
    width: Dimension
    height: Dimension
    fps: Fps = 30
    transport: TransportChoice = "auto"


class Playback(msgspec.Struct, kw_only=True):
    """Where a browser plays the stream, and the token it sends (a secret until ``expires_at``)."""

    whep_url: str
    hls_url: str
    token: str
    expires_at: float
    """When the token expires, on the auth service's clock."""
    expires_in: float
    """Seconds the token stays valid from this answer. A browser counts this down: its clock
    may not agree with ``expires_at``."""
    mediamtx_node: str = ""
    """The MediaMTX node the URLs point at: the stream's own, or an edge that pulls from it."""


class Readiness(Health, kw_only=True, omit_defaults=False):
    """The probes' readiness (framecast.runtime.health) with what the gateway depends on."""

    status: Literal["ready", "not ready"]
    nats: Literal["connected", "disconnected"]
    state: Literal["loaded", "loading"]
    mediamtx: MediaMTXStatus


def stream_view(record: StreamRecord, view: StateView) -> StreamView:
    stats = view.stats.get(record.stream_id)
    health = view.paths.get(record.stream_id)
    return StreamView(
        stream_id=record.stream_id,
        state=record.state,
        reason=record.reason,
        source=_public(record.source),
        format=record.format,
        encoder_id=record.encoder_id,
        encoder_kind=record.encoder_kind,
        transport=record.transport or "",
        placement=record.placement,
        mediamtx_node=record.mediamtx_node,
        stats=None if stats is None else StatsView(
            encoder_id=stats.encoder_id, fps_in=stats.fps_in, fps_out=stats.fps_out, dropped=stats.dropped,
            repeated=stats.repeated, restarts=stats.restarts, frames_in=stats.frames_in,
            frames_out=stats.frames_out, bitrate_kbps=stats.bitrate_kbps, speed=stats.speed, at=stats.at,
        ),
        readers=health.readers if health else 0,
        codec=health.codec if health else "",
        profile=health.profile if health else "",
        mediamtx=view.mediamtx,
        metadata=record.metadata,
        updated_at=record.updated_at,
    )


def _public(source: AnySource | None) -> AnySource | None:
    """A camera URL without its credentials and query (either may hold a password or token)."""
    if not isinstance(source, UrlSource):
        return source
    parts = urlsplit(source.url)
    host = parts.netloc.rpartition("@")[2]
    return UrlSource(url=urlunsplit((parts.scheme, host, parts.path, "", "")))



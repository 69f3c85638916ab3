"""The encoder's settings: one FRAMECAST_* variable per field, validated once at start-up."""

from __future__ import annotations

from typing import Literal

from framecast.runtime.mediamtx_nodes import MediaMTXNode, configured_nodes
from framecast.runtime.settings import CommonSettings, Url


class EncoderSettings(CommonSettings, kw_only=True, frozen=True):
    encoder: str = ""
    """Force one FFmpeg encoder (h264_nvenc, libx264, ...) instead of probing."""
    max_streams: int = 8
    """Streams this instance encodes at most; further announces are refused."""
    hw_sessions: int = 0
    """Hardware encoder sessions available (NVENC on consumer GPUs: 8); 0 = no limit."""
    mediamtx_rtsp: Url = "rtsp://127.0.0.1:8554"
    """MediaMTX RTSP base URL; a stream publishes to <base>/<stream id>."""
    mediamtx_api: Url = "http://127.0.0.1:9997"
    """MediaMTX's control API, where each stream's path gets the settings that keep its viewers
    watching when its publisher changes (docs/operations.md, "Viewers through a publisher change")."""
    mediamtx_nodes: str = ""
    """Several MediaMTX nodes, as JSON: ``[{"name": "a", "rtsp": ..., "api": ..., "whep": ..., "hls": ...}]``
    (docs/operations.md, "Several MediaMTX nodes"); empty: the one node of the settings here."""
    publish_auth: Literal["token", "none"] = "token"
    """token: ask the auth service for a short publish token per (re)start; none: publish without."""
    gop: int = 0
    """Frames between keyframes; 0 = a third of a second (a new viewer's first picture sooner)."""
    bitrate_kbps: int = 0
    """The bitrate, also the most a stream may use (libx264 spends less on a still picture);
    0 = chosen from the resolution."""
    stall_timeout_s: float = 5.0
    heartbeat_repeat_s: float = 1.0
    """How often the last frame is repeated while the producer sends nothing."""
    producer_timeout_s: float = 3.0
    """No frame and no producer heartbeat for this long: the stream is stalled."""
    producer_gone_s: float = 10.0
    """Stalled on a silent producer this much longer: the stream fails and its ring is freed."""
    heartbeat_s: float = 0.5
    stats_s: float = 2.0

    def __post_init__(self) -> None:
        self.nodes()

    def nodes(self) -> tuple[MediaMTXNode, ...]:
        """Where streams may publish (one node unless FRAMECAST_MEDIAMTX_NODES lists several)."""
        return configured_nodes(self.mediamtx_nodes, MediaMTXNode(name="default", rtsp=self.mediamtx_rtsp,
                                                                      api=self.mediamtx_api))

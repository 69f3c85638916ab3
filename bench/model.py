"""The capacity model of docs/scaling.md: measured figures, where each was measured, nodes per kind.

Every figure is a :class:`Figure` naming its source: a section of docs/performance.md
(measured), the code (counted), or how it was derived from measured ones. Nothing here is
measured at a larger scale than the 2-vCPU machine those sections ran on: the node counts
multiply per-stream and per-viewer costs, they do not observe a fleet. ``bench.simulate``
prints :func:`table` and sizes its encoders with :func:`streams_per_core`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Figure:
    value: float
    unit: str
    source: str


PERF = "docs/performance.md"

# ----- encoders ------------------------------------------------------------------------------
X264_360P = Figure(0.076, "core per 640x360@30 stream, all in", f"{PERF} §3 Capacity: 24 streams, 182 % of a core")
X264_360P_ONLY = Figure(0.053, "core per 640x360@30 stream, x264 alone", f"{PERF} §3 Capacity")
X264_720P_ONLY = Figure(0.25, "core per 1280x720@30 stream, x264 alone",
                        f"{PERF} §6, server CPU by viewer count: x264 (once) 0.237-0.261 CPU-s/s")
FRAMECAST_PARTS_360P = Figure(0.023, "core per 640x360@30 stream: SDK, ring, pump", f"{PERF} §3 (7.6 % - 5.3 %)")
PARTS_720P_OVER_360P = Figure(2.3, "x", f"{PERF} §2 CPU split: the SDK + encoder process 9.3 % vs 4.0 % of a core")
X264_720P = Figure(X264_720P_ONLY.value + FRAMECAST_PARTS_360P.value * PARTS_720P_OVER_360P.value,
                   "core per 1280x720@30 stream, all in",
                   "derived, not measured: x264 alone (§6) + framecast's parts at 360p x 2.3 (§2); "
                   "no capacity run at 720p")
NVENC_CONSUMER_SESSIONS = Figure(8, "concurrent NVENC sessions per consumer card",
                                 "NVIDIA's driver limit on current GeForce drivers; not measured here")

# ----- MediaMTX -------------------------------------------------------------------------------
WEBRTC_360P = Figure(0.0033, "core per WebRTC viewer, 640x360@30", f"{PERF} §5 MediaMTX's CPU per viewer, 50 viewers")
WEBRTC_720P = Figure(0.0046, "core per WebRTC viewer, 1280x720@30", f"{PERF} §6, 50 viewers")
HLS_360P = Figure(0.0025, "core per HLS viewer, 640x360@30", f"{PERF} §5, 50 viewers")
INGEST = Figure(0.011, "core per published stream, no viewer",
                f"{PERF} §6 MediaMTX at 0 viewers (0.010-0.011; §5: 0.007); an upper bound: it includes idle")
BITRATE_360P = Figure(797, "kbit/s per viewer, 640x360@30", f"{PERF} §6 bytes per viewer (payload, no headers)")
BITRATE_720P = Figure(2501, "kbit/s per viewer, 1280x720@30", f"{PERF} §6 bytes per viewer (payload, no headers)")

# ----- auth and gateway -------------------------------------------------------------------------
HOOK_PER_WORKER = Figure(2184, "allowed decisions/s per uvicorn worker (one core busy)",
                         f"{PERF} Auth hook: 1 worker, 8 concurrent, fresh connections")
HOOK_SEQUENTIAL = Figure(1568, "decisions/s one at a time (MediaMTX's path manager)", f"{PERF} Auth hook")
HOOK_CALLS_PER_JOIN = Figure(1, "hook calls per WebRTC or HLS viewer join, none while playing",
                             f"{PERF} §5 (counted by the real MediaMTX); an RTSP reader costs 2-3")
VIEWER_TOKEN_TTL_S = Figure(300, "s, a viewer token's life", "code: auth tokens.DEFAULT_VIEWER_TTL_S")
PLAYER_RENEW_S = Figure(225, "s between a player's token renewals (3/4 of the life)",
                        "code: gateway static/watch.js scheduleRefresh")
GATEWAY_PER_WORKER = Figure(HOOK_PER_WORKER.value, "playback requests/s per gateway worker",
                            "assumed, not measured: no gateway benchmark exists; a playback request signs a "
                            "token via auth over NATS, at least an allowed hook decision's work")

# ----- the bus --------------------------------------------------------------------------------
WRITES_PER_TRANSITION = Figure(2, "JetStream writes per lifecycle transition",
                               "code: proto store.py transition(): a KV compare-and-set, then the events publish")
TRANSITIONS_START = Figure(4, "transitions per stream start", "code: requested, starting, publishing, live")
TRANSITIONS_STOP = Figure(2, "transitions per stream stop", "code: stopping, stopped")
TRANSITIONS_FAILOVER = Figure(4, "transitions per failover", "code: stalled (reconciler), starting, publishing, live")
TRANSITIONS_DRAIN = Figure(3, "transitions per drain hand-over", "code: starting, publishing, live (no gap)")
REPLICAS = Figure(3, "copies of each JetStream write on a cluster", "code: proto store.py replicas_for")
HEARTBEATS_PER_S = Figure(2, "heartbeats/s per encoder", "code: encoder settings heartbeat_s = 0.5")
STATS_PER_S = Figure(0.5, "stats messages/s per stream", "code: encoder settings stats_s = 2.0")

# ----- frames over NATS -------------------------------------------------------------------------
NATS_FRAME_360P = Figure(2.8, "CPU-ms per 640x360 frame over NATS, every process",
                         f"{PERF} §1 Transport row (d); nats-server's share 0.89 ms")
NATS_FRAME_1080P = Figure(18.0, "CPU-ms per 1920x1080 frame over NATS, every process",
                          f"{PERF} §1 Transport row (d); nats-server 6.3 ms; at most ≈ 96 frames/s")
SHM_FRAME_360P = Figure(0.55, "CPU-ms per 640x360 frame through the ring", f"{PERF} §1 Transport row (c2)")
NATS_FRAME_720P = Figure(
    NATS_FRAME_360P.value + (NATS_FRAME_1080P.value - NATS_FRAME_360P.value) * (1280 * 720 - 640 * 360)
    / (1920 * 1080 - 640 * 360),
    "CPU-ms per 1280x720 frame over NATS", "derived, not measured: linear in pixels between 360p and 1080p (§1)")

SIZES = {
    "640x360": {"encode": X264_360P, "webrtc": WEBRTC_360P, "hls": HLS_360P, "kbps": BITRATE_360P,
                "nats_ms": NATS_FRAME_360P, "pixels": 640 * 360},
    "1280x720": {"encode": X264_720P, "webrtc": WEBRTC_720P, "hls": None, "kbps": BITRATE_720P,
                 "nats_ms": NATS_FRAME_720P, "pixels": 1280 * 720},
}
FPS = 30
SCALES = ((10, 100), (200, 2_000), (1_000, 50_000), (10_000, 1_000_000))


@dataclass(frozen=True, slots=True)
class Sizing:
    """What the node counts assume; each is a choice, not a measurement."""

    size: str = "1280x720"
    cores: int = 16
    """Cores per node of every kind."""
    link_gbps: float = 10.0
    target: float = 0.8
    """The share of a node's cores or link planned to be busy."""
    spare: float = 0.1
    """Encoder nodes held free for failover and drains (at least one)."""
    join_window_s: float = 300.0
    """Peak joins: every viewer arriving within this window (an event starting)."""
    start_window_s: float = 60.0
    """Peak starts: every camera starting within this window (after a full outage)."""


def streams_per_core(size: str, target: float = 0.8) -> float:
    """libx264 streams one core carries at ``target`` busy."""
    return target / SIZES[size]["encode"].value


def raw_mbps(size: str) -> float:
    """Raw bgr24 frames at 30 fps, Mbit/s: what a stream's frames weigh over NATS (arithmetic)."""
    return SIZES[size]["pixels"] * 3 * FPS * 8 / 1e6


def nats_cores(size: str) -> float:
    """Cores a 30 fps stream's frames cost over NATS, every process together (§1 (d))."""
    return SIZES[size]["nats_ms"].value * FPS / 1000


def nodes(cameras: int, viewers: int, sizing: Sizing = Sizing()) -> dict[str, Any]:
    """Nodes of each kind for ``cameras`` streams and ``viewers`` WebRTC viewers at peak."""
    s = SIZES[sizing.size]
    node_cpu = sizing.cores * sizing.target
    link_kbps = sizing.link_gbps * 1e6 * sizing.target
    kbps = s["kbps"].value
    per_viewer = s["webrtc"].value

    per_encoder = math.floor(sizing.cores * streams_per_core(sizing.size, sizing.target))
    encoders = math.ceil(cameras / per_encoder)
    encoders += max(1, math.ceil(sizing.spare * encoders))

    ingest_cpu = cameras * INGEST.value
    viewer_cpu = viewers * per_viewer
    one_node = max((ingest_cpu + viewer_cpu) / node_cpu, max(cameras, viewers) * kbps / link_kbps)
    per_edge = math.floor(min(node_cpu / per_viewer, link_kbps / kbps))
    if one_node <= 1:
        origins, edges, pulls = 1, 0, 0
    else:
        edges = math.ceil(viewers / per_edge)
        pulls = min(cameras, viewers) + edges  # the gateway sends a stream's viewers to as few edges as fit
        origins = max(math.ceil((ingest_cpu + pulls * per_viewer) / node_cpu),
                      math.ceil(max(cameras, pulls) * kbps / link_kbps))

    joins = viewers / sizing.join_window_s
    decisions = joins * HOOK_CALLS_PER_JOIN.value + cameras / sizing.start_window_s
    auth = max(1, math.ceil(decisions / (HOOK_PER_WORKER.value * sizing.target)))
    playback = joins + viewers / PLAYER_RENEW_S.value
    gateway = max(1, math.ceil(playback / (GATEWAY_PER_WORKER.value * sizing.target)))
    js_writes = cameras * TRANSITIONS_START.value * WRITES_PER_TRANSITION.value / sizing.start_window_s
    core_msgs = (encoders * HEARTBEATS_PER_S.value + cameras * STATS_PER_S.value
                 + decisions + 2 * playback)  # an audit event per decision; request and reply per token
    egress_gbps = viewers * kbps / 1e6
    need = {
        "encoder CPU": encoders,
        "MediaMTX (CPU or link)": origins + edges,
        "auth hook": auth,
        "gateway": gateway,
    }
    return {
        "cameras": cameras, "viewers": viewers, "size": sizing.size,
        "streams_per_encoder_node": per_encoder, "encoder_nodes": encoders,
        "nvenc_consumer_cards": math.ceil(cameras / NVENC_CONSUMER_SESSIONS.value),
        "one_mediamtx_load": one_node, "viewers_per_edge": per_edge,
        "mediamtx_origins": origins, "mediamtx_edges": edges, "edge_pulls": pulls,
        "egress_gbps": egress_gbps, "joins_per_s": joins, "hook_decisions_per_s": decisions, "auth_workers": auth,
        "playback_requests_per_s": playback, "gateway_workers": gateway, "gateway_event_streams": viewers,
        "jetstream_writes_per_s_start_storm": js_writes, "core_nats_msgs_per_s": core_msgs,
        "cross_host_raw_gbps": cameras * raw_mbps(sizing.size) / 1000,
        "cross_host_nats_cores": cameras * nats_cores(sizing.size),
        "most_nodes": max(need, key=lambda k: need[k]),
        "not_built": "several MediaMTX, gateway routing" if one_node > 1 else "",
    }


def table(sizing: Sizing = Sizing()) -> tuple[str, list[dict[str, Any]]]:
    """Nodes per kind at the four scales of docs/scaling.md, as printed there."""
    from . import report

    rows = [nodes(n, m, sizing) for n, m in SCALES]
    text = report.table(
        ["cameras", "viewers", "encoder nodes", "NVENC cards (8 sessions)", "one MediaMTX load", "MediaMTX origins",
         "MediaMTX edges", "egress Gbit/s", "joins/s", "auth workers", "gateway workers", "JetStream writes/s",
         "most nodes", "needs what is not built"],
        [[r["cameras"], r["viewers"], r["encoder_nodes"], r["nvenc_consumer_cards"], f"{r['one_mediamtx_load']:.2f}",
          r["mediamtx_origins"], r["mediamtx_edges"], r["egress_gbps"], r["joins_per_s"], r["auth_workers"],
          r["gateway_workers"], r["jetstream_writes_per_s_start_storm"], r["most_nodes"],
          r["not_built"] or "-"] for r in rows],
        title=(f"Capacity model (docs/scaling.md): {sizing.size}@30, WebRTC viewers, nodes of {sizing.cores} cores "
               f"and {sizing.link_gbps:g} Gbit/s planned {sizing.target:.0%} busy; joins within "
               f"{sizing.join_window_s:g} s, starts within {sizing.start_window_s:g} s"),
    )
    return text, rows

"""Benchmark 2 (issue 3): from a frame's capture to its decoded copy at an RTSP receiver.

The real path, in this process: the SDK (``framecast.capture.open``, shared-memory ring) ->
the encoder service (its lifespan run in-process, libx264 forced, no publish token) -> its
pump thread -> FFmpeg libx264 -> RTSP/TCP -> ``RtspReceiver`` (an FFmpeg RTSP listener
standing in for MediaMTX, decoding with ``-fflags nobuffer -flags low_delay -threads 1``).

Each frame is a test pattern stamped with the wall-clock ms just before it is rendered and
sent; the receiver records when each decoded frame's last byte reached it. Latency = arrival
(wall clock) - stamp. It includes the receiver's own delay: libavformat's RTP H.264 reader
holds each frame until the next one starts, so about one frame interval (33 ms at 30 fps) of
every figure is the receiver's, not framecast's. Frames are paced at the stream's fps on an
absolute schedule; the first seconds (encoder start, the receiver's wait for a keyframe) are
warm-up and left out.

Start-up is measured on the way, from the SDK's ``open`` (the stream requested, the encoder
service already running): to the stream's record saying ``publishing`` (FFmpeg's first output
reached the RTSP server), and to the first decoded frame at the receiver. The receiver decodes
with ``nobuffer``, which drops every frame before the second keyframe, and probes the stream
before its first frame, so that second figure holds waits a browser behind MediaMTX does not
have (docs/performance.md, section 5: first picture after a click).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from . import procs, report
from .options import Options

SIZES = ((640, 360), (1280, 720))
FPS = 30
DEFAULT_FRAMES = 300  # 10 s at 30 fps
QUICK_FRAMES = 60
WARMUP_S = 3.0
QUICK_WARMUP_S = 2.0
TAIL_S = 1.0


@contextlib.contextmanager
def pump_probe() -> Iterator[list[tuple[int, float, float]]]:
    """Instrumentation, for the time it is active: every new frame the encoder's pump writes is
    recorded as (capture time ns, ms from capture to the pump starting its write, ms the write
    took). Wraps ``Pump._write_frame``; nothing else changes."""
    from framecast.encoder.pump import Pump

    records: list[tuple[int, float, float]] = []
    original = Pump._write_frame

    def write_frame(self: Pump, view: memoryview | None, generation: int, *, repeat: bool) -> bool:
        captured = self._reader.last_timestamp_ns
        began = time.time_ns()
        done = original(self, view, generation, repeat=repeat)
        if done and not repeat and captured:
            records.append((captured, (began - captured) / 1e6, (time.time_ns() - began) / 1e6))
        return done

    Pump._write_frame = write_frame  # type: ignore[method-assign]
    try:
        yield records
    finally:
        Pump._write_frame = original  # type: ignore[method-assign]


class _Count(logging.Handler):
    """Counts the log records whose message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += self.text in record.getMessage()


async def measure(width: int, height: int, fps: int, frames: int, warmup_s: float, nats_url: str) -> dict[str, Any]:
    import framecast.capture
    from framecast.encoder.service import lifespan as encoder_lifespan
    from framecast.encoder.settings import EncoderSettings
    from framecast.frames.pattern import TestPattern, read_stamp
    from framecast.proto.bus import Bus
    from framecast.proto.states import StreamState
    from framecast.proto.store import StateStore
    from tests.support.rtsp import RtspReceiver
    from tests.support.services import running

    stream_id = f"bench-lat-{width}-{secrets.token_hex(3)}"
    warmup = round(warmup_s * fps)
    total = warmup + frames
    clock_offset = time.time() - time.monotonic()  # receiver arrival times are monotonic
    first: dict[int, float] = {}  # frame_no -> latency ms of its first decoded copy
    first_arrival: list[float] = []  # monotonic time the first decoded frame arrived
    received = undecodable = repeats = 0
    pattern = TestPattern(width, height)

    def collect(rx: RtspReceiver) -> None:
        nonlocal received, undecodable, repeats
        while rx.frames:
            frame = rx.frames.popleft()
            received += 1
            if not first_arrival:
                first_arrival.append(frame.arrived)
            stamp = read_stamp(np.asarray(frame.image))
            if stamp is None:
                undecodable += 1
            elif stamp.frame_no in first:
                # FFmpeg's constant-frame-rate output repeating a frame (after the last one it
                # repeats it until the pump's once-a-second heartbeat: not counted)
                repeats += warmup < stamp.frame_no < total
            elif stamp.frame_no <= total:
                first[stamp.frame_no] = (frame.arrived + clock_offset) * 1000 - stamp.ms

    async def collector(rx: RtspReceiver) -> None:
        while True:
            collect(rx)
            await asyncio.sleep(0.05)

    unconfirmed = _Count("did not confirm the end")
    logging.getLogger("framecast.capture").addHandler(unconfirmed)
    rx = RtspReceiver(width=width, height=height, path=stream_id, pix_fmt="gray", nobuffer=True,
                      reconnect=False, keep=1000)
    settings = EncoderSettings(nats_url=nats_url, mediamtx_rtsp=f"rtsp://127.0.0.1:{rx.port}",
                               publish_auth="none", encoder="libx264", log_level="warning", stats_s=1.0)
    window_from_ns = 0  # capture time of the first measured frame
    bus = await Bus.connect(nats_url, client_id=f"bench-{stream_id}")
    store = await StateStore.open(bus, "bench")
    published_at: list[float] = []

    async def note_publishing() -> None:
        async for _, record in store.watch(stream_id):
            if record is not None and record.state is StreamState.PUBLISHING:
                published_at.append(time.monotonic())
                return

    watching = asyncio.create_task(note_publishing())
    meter: procs.CpuMeter | None = None
    with pump_probe() as pump_records:
        async with rx, running("encoder", settings, encoder_lifespan):
            task = asyncio.create_task(collector(rx))
            try:
                requested_at = time.monotonic()
                async with framecast.capture.open(stream_id, width=width, height=height, fps=fps,
                                                  nats_url=nats_url) as stream:
                    period = 1 / fps
                    start = time.monotonic()
                    for n in range(1, total + 1):
                        due = start + (n - 1) * period
                        await asyncio.sleep(max(0.0, due - time.monotonic()))
                        if n == warmup + 1:
                            encoder_pids = [pid for pid, cmd in procs.children_of(os.getpid())
                                            if "-f rtsp" in cmd and "pipe:0" in cmd]
                            meter = procs.CpuMeter({
                                "bench process (SDK, encoder service, pump)": [procs.SELF],
                                "FFmpeg libx264": encoder_pids,
                                "receiver": [rx._proc.pid] if rx._proc else [],
                            })
                            meter.start()
                        now_ns = time.time_ns()
                        window_from_ns = window_from_ns or (now_ns if n > warmup else 0)
                        await stream.send(pattern.render(n, now_ns // 1_000_000), now_ns)
                    await asyncio.sleep(TAIL_S)
                    if meter is not None:
                        meter.stop()
            finally:
                for cancelled in (task, watching):
                    cancelled.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await cancelled
                await bus.close()
                collect(rx)
    logging.getLogger("framecast.capture").removeHandler(unconfirmed)
    # the last frame is left out: the receiver releases a frame only when the next one starts,
    # and after the last one only the pump's once-a-second repeat comes
    measured = [lat for frame_no, lat in sorted(first.items()) if warmup < frame_no < total]
    frames -= 1
    pump_wait = [wait for captured, wait, _ in pump_records if captured >= window_from_ns]
    pump_write = [took for captured, _, took in pump_records if captured >= window_from_ns]
    return {
        "size": f"{width}x{height}",
        "fps": fps,
        "frames_in_window": frames,
        "frames_received": len(measured),
        "frames_missing": frames - len(measured),
        "decoded_copies_total": received,
        "repeated_in_window": repeats,
        "undecodable_stamps": undecodable,
        "p50_ms": report.percentile(measured, 50),
        "p95_ms": report.percentile(measured, 95),
        "p99_ms": report.percentile(measured, 99),
        "min_ms": min(measured, default=float("nan")),
        "max_ms": max(measured, default=float("nan")),
        "capture_to_pump_write_p50_ms": report.percentile(pump_wait, 50),
        "capture_to_pump_write_min_ms": min(pump_wait, default=float("nan")),
        "capture_to_pump_write_max_ms": max(pump_wait, default=float("nan")),
        "pump_write_p50_ms": report.percentile(pump_write, 50),
        "receiver_hold_ms": 1000 / fps,
        "rest_p50_ms": report.percentile(measured, 50) - report.percentile(pump_wait, 50) - 1000 / fps,
        "p50_minus_receiver_hold_ms": report.percentile(measured, 50) - 1000 / fps,
        "cpu_pct_of_one_core": {k: 100 * v / meter.wall for k, v in meter.used.items()} if meter else {},
        "startup_ms": (first_arrival[0] - requested_at) * 1000 if first_arrival else float("nan"),
        "startup_publishing_ms": (published_at[0] - requested_at) * 1000 if published_at else float("nan"),
        "warmup_frames": warmup,
        "end_confirmed_by_encoder": unconfirmed.count == 0,
    }


async def _run_all(options: Options) -> list[dict[str, Any]]:
    from framecast.devstack.nats import NatsServer

    frames = options.frames or (QUICK_FRAMES if options.quick else DEFAULT_FRAMES)
    warmup_s = QUICK_WARMUP_S if options.quick else WARMUP_S
    server = await NatsServer().start()
    results = []
    try:
        for width, height in SIZES:
            try:
                result = await measure(width, height, FPS, frames, warmup_s, server.url)
            except Exception as exc:  # a failed size is reported, the other still runs
                result = {"size": f"{width}x{height}", "fps": FPS, "error": f"{type(exc).__name__}: {exc}"}
            results.append(result)
            options.progress(
                f"latency {result['size']}@{FPS}: "
                + (result.get("error") or f"p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms, "
                   f"{result['frames_received']}/{result['frames_in_window']} frames")
            )
    finally:
        await server.stop()
    return results


def run(options: Options) -> dict[str, Any]:
    results = asyncio.run(_run_all(options))
    rows = []
    for r in results:
        if "error" in r:
            rows.append([f"{r['size']}@{r['fps']}", *["n/a"] * 11])
            continue
        rows.append([
            f"{r['size']}@{r['fps']}", r["p50_ms"], r["p95_ms"], r["p99_ms"], r["p95_ms"] / r["p50_ms"],
            r["p50_ms"] / r["receiver_hold_ms"], r["capture_to_pump_write_p50_ms"], r["receiver_hold_ms"],
            r["rest_p50_ms"], f"{r['frames_received']}/{r['frames_in_window']}",
            r.get("startup_publishing_ms", float("nan")), r.get("startup_ms", float("nan")),
        ])
    text = report.table(
        ["stream", "p50 ms", "p95 ms", "p99 ms", "p95/p50", "p50 in frames", "capture->pump ms",
         "receiver hold ms", "rest ms", "frames seen", "to publishing ms", "to first frame ms"],
        rows,
        title="latency: SDK (shm) -> encoder service -> libx264 -> RTSP -> receiver decode; capture stamp to "
              "decoded arrival",
    )
    text += "".join(f"\n{r['size']} failed: {r['error']}" for r in results if "error" in r)
    text += (
        "\n(capture->pump: median wait from capture to the pump writing the frame to FFmpeg - the ring plus "
        "the pump's fps grid; receiver hold: one frame interval the receiver's RTP H.264 reader holds each "
        "frame; rest = p50 - both: x264, RTSP, decode; start-up: from the SDK's open to the record saying "
        "publishing, and to the receiver's first decoded frame (its probe and nobuffer wait included); "
        "goal <= 500 ms, the spike's first HLS manifest took 1685 ms)"
    )
    return {
        "group": "latency",
        "settings": {"fps": FPS, "receiver": "RtspReceiver(nobuffer=True, pix_fmt=gray)", "encoder": "libx264",
                     "warmup_s": QUICK_WARMUP_S if options.quick else WARMUP_S},
        "results": results,
        "table": text,
    }

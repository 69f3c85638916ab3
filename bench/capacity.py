"""Benchmark 3 (issue 3): how many 640x360@30 libx264 streams this machine keeps at full rate.

For N = 1, 2, 4, 8, ... (up to 24, stopping at the first N that fails): a producer process
opens N streams with the SDK (shared memory) and sends each test-pattern frames at 30 fps;
the encoder service, in this process, claims them and runs one libx264 FFmpeg per stream,
publishing over RTSP to :class:`RtspSink` (one RTSP address for every stream, media
discarded, frames counted - the part MediaMTX would play, without decoding anything).

Per stream, over the measuring window (after a warm-up): the encoder's own figure, fps_out
from ``StreamStats`` on ``framecast.stream.<id>.stats`` (frames the pump wrote to FFmpeg per
second; it falls when FFmpeg cannot take them as fast as they come), and the frames per
second that reached the RTSP server. N is sustained when every stream keeps both at >= 29 on
average over the window; an N that fails is measured once more (these are shared cores, and a
neighbour's burst is not this machine's limit) and counts as failed only if both runs fail.
CPU: the machine's busy share and the CPU of each kind of process involved.

Beside it, the same search with plain FFmpeg processes (issue 18: "a script around FFmpeg"): a
producer process starts N FFmpegs with framecast's own libx264 command and writes them the
same frames at the same rate, ``stdin.write(frame.tobytes())`` from one loop, to the same RTSP
sink; N is sustained when the script feeds every stream >= 29 frames a second and every stream
reaches the server at >= 29 fps (FFmpeg repeats frames to keep its output rate, so the server's
count alone would hide a script that fell behind). The goal: framecast sustains at least 0.9x
as many streams.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from . import procs, report
from .options import Options
from .transport import ROOT, read_line, tell

WIDTH, HEIGHT, FPS = 640, 360, 30
STEPS = (1, 2, 4, 8, 12, 16, 20, 24)
QUICK_STEPS = (1, 2)
SUSTAINED_FPS = 29.0
DEFAULT_FRAMES = 240  # per stream: an 8 s window
QUICK_FRAMES = 60
WARMUP_S = 3.0
QUICK_WARMUP_S = 1.0
STATS_S = 1.0
ATTEMPTS = 2  # a failing N is measured again: a neighbour's burst on shared cores is not a limit
START_TIMEOUT_S = 60.0


async def measure(n: int, window_s: float, warmup_s: float, nats_url: str, nats_pid: int | None) -> dict[str, Any]:
    from framecast.encoder.service import lifespan as encoder_lifespan
    from framecast.encoder.settings import EncoderSettings
    from framecast.proto import subjects
    from framecast.proto.bus import Bus
    from framecast.proto.messages import StreamStats
    from tests.support.services import running

    from .rtsp_sink import RtspSink

    prefix = f"bench-cap{n}-{secrets.token_hex(2)}-"
    samples: dict[str, list[StreamStats]] = {}

    async def on_stats(message: StreamStats, _msg: object) -> None:
        if message.stream_id.startswith(prefix):
            samples.setdefault(message.stream_id, []).append(message)

    bus = await Bus.connect(nats_url, client_id=f"bench-capacity-{os.getpid()}")
    producer = None
    producer_log = tempfile.TemporaryFile()
    try:
        await bus.subscribe(subjects.STATS_ALL, StreamStats, on_stats)
        async with RtspSink() as sink:
            settings = EncoderSettings(
                nats_url=nats_url, mediamtx_rtsp=sink.url, publish_auth="none", encoder="libx264",
                max_streams=max(16, n), stats_s=STATS_S, log_level="warning",
            )
            async with running("encoder", settings, encoder_lifespan):
                producer = procs.spawn(
                    [sys.executable, "-m", "bench.producer", "sdk", "--width", str(WIDTH), "--height", str(HEIGHT),
                     "--fps", str(FPS), "--streams", str(n), "--prefix", prefix, "--url", nats_url],
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=producer_log, cwd=ROOT,
                )
                spawned = producer
                window = await _window(producer, sink, warmup_s, window_s, lambda: {
                    "FFmpeg libx264 (all streams)": [pid for pid, cmd in procs.children_of(os.getpid())
                                                     if "-f rtsp" in cmd],
                    "encoder service + pumps + RTSP sink (this process)": [procs.SELF],
                    "producer (SDK, N streams)": [spawned.pid],
                    "nats-server": [nats_pid] if nats_pid else [],
                })
                producer = None
    finally:
        if producer is not None:
            procs.stop(producer)
        await bus.close()
        producer_log.seek(0)
        log_lines = producer_log.read().decode(errors="replace").splitlines()
        producer_log.close()
    unconfirmed = sum("did not confirm the end" in line for line in log_lines)
    streams = []
    for index, stream_id in enumerate(window.ids):
        seen = [s for s in samples.get(stream_id, []) if window.began <= s.at <= window.ended + STATS_S / 2]
        fps_out = (
            (seen[-1].frames_out - seen[0].frames_out) / (seen[-1].at - seen[0].at)
            if len(seen) >= 2 and seen[-1].at > seen[0].at else float("nan")
        )
        streams.append({
            "stream_id": stream_id,
            "fps_out": fps_out,
            "fps_out_samples": [s.fps_out for s in seen],
            "fps_out_median": report.median([s.fps_out for s in seen]),
            "fps_out_worst_sample": min((s.fps_out for s in seen), default=float("nan")),
            "fps_at_rtsp_server": window.at_server[index],
            "fps_sent": window.sent[index],
            "dropped_in_window": seen[-1].dropped - seen[0].dropped if len(seen) >= 2 else 0,
            "speed": report.median([s.speed for s in seen]),
            "restarts": seen[-1].restarts if seen else 0,
        })
    meter = window.meter
    fps_out = [s["fps_out"] for s in streams]
    at_server = [s["fps_at_rtsp_server"] for s in streams]
    sustained = all(v >= SUSTAINED_FPS for v in fps_out) and all(v >= SUSTAINED_FPS for v in at_server)
    core = {k: 100 * v / meter.wall for k, v in meter.used.items()}
    return {
        "streams": n,
        "sustained": sustained,
        "fps_out_mean": sum(fps_out) / n,
        "fps_out_min": min(fps_out),
        "fps_at_server_mean": sum(at_server) / n,
        "fps_at_server_min": min(at_server),
        "fps_sent_min": min(s["fps_sent"] for s in streams),
        "dropped_in_window": sum(s["dropped_in_window"] for s in streams),
        "cpu_pct_of_one_core": core,
        "ffmpeg_cpu_pct_per_stream": core["FFmpeg libx264 (all streams)"] / n,
        "our_cpu_pct": sum(core.values()),
        "machine_busy_pct": 100 * meter.machine_busy,
        "window_s": window.ended - window.began,
        "ends_not_confirmed_by_encoder": unconfirmed,
        "producer_log_tail": log_lines[-5:],
        "per_stream": streams,
    }


async def measure_plain(n: int, window_s: float, warmup_s: float) -> dict[str, Any]:
    """``n`` plain FFmpeg processes fed by one script, no framecast service in between."""
    from .rtsp_sink import RtspSink

    prefix = f"bench-plain{n}-{secrets.token_hex(2)}-"
    producer = None
    try:
        async with RtspSink() as sink:
            producer = procs.spawn(
                [sys.executable, "-m", "bench.producer", "ffmpeg", "--width", str(WIDTH), "--height", str(HEIGHT),
                 "--fps", str(FPS), "--streams", str(n), "--prefix", prefix, "--url", sink.url],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT,
            )
            spawned = producer
            window = await _window(producer, sink, warmup_s, window_s, lambda: {
                "FFmpeg libx264 (all streams)": [pid for pid, _ in procs.children_of(spawned.pid)],
                "the script feeding them": [spawned.pid],
                "RTSP sink (this process)": [procs.SELF],
            })
            producer = None
    finally:
        if producer is not None:
            procs.stop(producer)
    at_server, sent, meter = window.at_server, window.sent, window.meter
    core = {k: 100 * v / meter.wall for k, v in meter.used.items()}
    return {
        "streams": n,
        # FFmpeg's constant-rate output repeats frames it was not given: the server's count alone
        # would call a script that fell behind sustained, so the frames fed in count too
        "sustained": all(v >= SUSTAINED_FPS for v in at_server) and all(v >= SUSTAINED_FPS for v in sent),
        "fps_at_server_mean": sum(at_server) / n,
        "fps_at_server_min": min(at_server),
        "fps_sent_min": min(sent),
        "cpu_pct_of_one_core": core,
        "ffmpeg_cpu_pct_per_stream": core["FFmpeg libx264 (all streams)"] / n,
        "script_cpu_pct": core["the script feeding them"],
        "machine_busy_pct": 100 * meter.machine_busy,
    }


@dataclass
class _Window:
    """One measuring window: per stream, the frames per second sent and received at the sink."""

    ids: list[str]
    began: float
    """Wall clock, as ``StreamStats.at``."""
    ended: float
    sent: list[float]
    at_server: list[float]
    meter: procs.CpuMeter


async def _window(producer: subprocess.Popen[bytes], sink: Any, warmup_s: float, window_s: float,
                  pids: Callable[[], dict[str, list[int]]]) -> _Window:
    """Start a ready ``bench.producer``, wait until each of its streams reaches ``sink``, warm up,
    measure one window (CPU of ``pids()``), then stop the producer."""
    ready = await asyncio.to_thread(read_line, producer, START_TIMEOUT_S)
    ids: list[str] = ready["ready"]
    tell(producer, "go")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not all(sink.frames[i] > 0 for i in ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {sum(sink.frames[i] > 0 for i in ids)} of {len(ids)} streams reached "
                               f"the RTSP server within {START_TIMEOUT_S:g} s")
        await asyncio.sleep(0.1)  # polling the sink's counters: nothing to wait on
    await asyncio.sleep(warmup_s)
    meter = procs.CpuMeter(pids())
    sent_before = await mark(producer)
    received_before = {i: sink.frames[i] for i in ids}
    began = time.time()
    meter.start()
    await asyncio.sleep(window_s)
    meter.stop()
    ended = time.time()
    sent_after = await mark(producer)
    received_after = {i: sink.frames[i] for i in ids}
    tell(producer, "stop")
    await asyncio.to_thread(procs.stop, producer, 30.0)
    return _Window(
        ids=ids, began=began, ended=ended, meter=meter,
        sent=[(sent_after["sent"][k] - sent_before["sent"][k]) / (sent_after["t"] - sent_before["t"])
              for k in range(len(ids))],
        at_server=[(received_after[i] - received_before[i]) / (ended - began) for i in ids],
    )


async def mark(producer: Any) -> dict[str, Any]:
    """What a ``bench.producer sdk`` process has sent so far: ``{"t": monotonic s, "sent": [per stream]}``."""
    tell(producer, "mark")
    result: dict[str, Any] = await asyncio.to_thread(read_line, producer, 10.0)
    return result


async def _search(options: Options, label: str, step: Callable[[int], Awaitable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """N = 1, 2, 4, ... until one is not sustained (twice: shared cores have bursts)."""
    results: list[dict[str, Any]] = []
    for n in QUICK_STEPS if options.quick else STEPS:
        attempts = []
        for _ in range(ATTEMPTS):
            try:
                result = await step(n)
            except Exception as exc:  # a step that cannot run ends the search
                result = {"streams": n, "sustained": False, "error": f"{type(exc).__name__}: {exc}"}
            attempts.append(result)
            if result["sustained"] or "error" in result:
                break
            options.progress(f"capacity, {label}, {n} stream(s): not sustained; measuring once more")
        result = next((a for a in attempts if a["sustained"]), attempts[-1])
        result["attempts"] = len(attempts)
        result["failed_attempts"] = [a for a in attempts if a is not result]
        results.append(result)
        options.progress(
            f"capacity, {label}, {n} stream(s): "
            + (result.get("error") or f"at the server min {result['fps_at_server_min']:.1f} fps, "
               f"machine {result['machine_busy_pct']:.0f}% busy -> "
               + ("sustained" if result["sustained"] else "NOT sustained"))
        )
        if not result["sustained"]:
            break
    return results


async def _run_all(options: Options) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from framecast.devstack.nats import NatsServer

    frames = options.frames or (QUICK_FRAMES if options.quick else DEFAULT_FRAMES)
    window_s = frames / FPS
    warmup_s = QUICK_WARMUP_S if options.quick else WARMUP_S
    server = await NatsServer().start()
    try:
        nats_pid = server._process.pid if server._process else None
        framecast = await _search(options, "framecast",
                                  lambda n: measure(n, window_s, warmup_s, server.url, nats_pid))
    finally:
        await server.stop()
    plain = await _search(options, "plain FFmpeg", lambda n: measure_plain(n, window_s, warmup_s))
    return framecast, plain


def _answer(results: list[dict[str, Any]], steps: tuple[int, ...]) -> tuple[int, bool]:
    """The largest N sustained, and whether it is only the largest N tried."""
    answer = max((r["streams"] for r in results if r.get("sustained")), default=0)
    return answer, answer == steps[-1] and answer > 0


def run(options: Options) -> dict[str, Any]:
    results, plain = asyncio.run(_run_all(options))
    steps = QUICK_STEPS if options.quick else STEPS
    answer, bounded = _answer(results, steps)
    plain_answer, plain_bounded = _answer(plain, steps)
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["streams"], *["n/a"] * 8, "error"])
            continue
        rows.append([
            r["streams"], r["fps_out_mean"], r["fps_out_min"], r["fps_at_server_min"], r["fps_sent_min"],
            r["dropped_in_window"], r["ffmpeg_cpu_pct_per_stream"], r["our_cpu_pct"], r["machine_busy_pct"],
            "yes" if r["sustained"] else "NO",
        ])
    text = report.table(
        ["streams", "fps_out mean", "fps_out min", "at RTSP min", "sent min", "dropped", "x264 %core/stream",
         "our CPU %core", "machine busy %", f">= {SUSTAINED_FPS:g} fps"],
        rows,
        title=f"capacity: concurrent {WIDTH}x{HEIGHT}@{FPS} libx264 streams (SDK shm -> encoder -> RTSP), "
              f"{os.cpu_count()} CPUs",
    )
    text += "".join(f"\n{r['streams']} streams failed: {r['error']}" for r in results if "error" in r)
    verdict = (f"{answer} streams sustained" + (" (the largest N tried; the real limit may be higher)" if bounded else "")
               if answer else "not even 1 stream sustained")
    unconfirmed = sum(r.get("ends_not_confirmed_by_encoder", 0) for r in results)
    if unconfirmed:
        text += (f"\n{unconfirmed} of {sum(r['streams'] for r in results)} stream ends were not confirmed by the "
                 "encoder within the SDK's 5 s (see docs/performance.md: Pump.stop waits on itself)")
    text += f"\nanswer: {verdict}"
    plain_rows = [[r["streams"], *(["n/a"] * 5 + ["error"] if "error" in r else [
        r["fps_at_server_mean"], r["fps_at_server_min"], r["fps_sent_min"], r["ffmpeg_cpu_pct_per_stream"],
        r["script_cpu_pct"], "yes" if r["sustained"] else "NO"])] for r in plain]
    text += "\n\n" + report.table(
        ["streams", "at RTSP mean", "at RTSP min", "sent min", "x264 %core/stream", "script %core",
         f">= {SUSTAINED_FPS:g} fps"],
        plain_rows,
        title="beside it: plain FFmpeg processes fed by one script (stdin.write(frame.tobytes())), same command, "
              "same frames, same sink",
    )
    ratio = answer / plain_answer if plain_answer else float("nan")
    both_bounded = bounded and plain_bounded
    text += (f"\nplain FFmpeg: {plain_answer} streams sustained"
             + (" (the largest N tried)" if plain_bounded else "")
             + f"; framecast / plain = {ratio:.2f} (goal >= 0.9)"
             + (" - both reached the largest N tried: a lower bound on neither's limit" if both_bounded else ""))
    return {
        "group": "capacity",
        "settings": {"size": f"{WIDTH}x{HEIGHT}", "fps": FPS, "steps": steps, "sustained_fps": SUSTAINED_FPS,
                     "window_s": (options.frames or (QUICK_FRAMES if options.quick else DEFAULT_FRAMES)) / FPS,
                     "warmup_s": QUICK_WARMUP_S if options.quick else WARMUP_S, "encoder": "libx264",
                     "stats_s": STATS_S},
        "answer_streams": answer,
        "answer_is_the_bound": bounded,
        "results": results,
        "plain_ffmpeg": {"answer_streams": plain_answer, "answer_is_the_bound": plain_bounded, "results": plain},
        "framecast_over_plain": ratio,
        "table": text,
    }

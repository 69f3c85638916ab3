"""Soak and churn: whether memory, descriptors, rings and FFmpeg processes stay flat over time,
and come back after many starts and stops. Not in ``make test`` nor in a plain ``python -m bench``.

One stack serves both parts, every service in a process of its own so that each one's memory and
descriptors are its own: nats-server, auth, capture and two encoders (``encoder-a`` and
``encoder-b``, libx264, a publish token from auth per FFmpeg start), publishing to the real
MediaMTX where tests.support.real_mediamtx finds a binary (each publish then asks auth's hook),
else to bench/rtsp_sink.py.

Soak: a producer process (``bench.producer sdk``, as in capacity) opens 4 streams of
640x360@30 with ``framecast.capture.open`` (shared memory) and sends test-pattern frames for
``--minutes``. Every few seconds: resident memory, open descriptors and threads of every process
(each FFmpeg, the producer, this one), the streams' entries under /dev/shm, frames sent (the
producer's count) and the encoder's ``StreamStats`` (frames in, dropped, repeated, restarts).
Per process: RSS at start and end and its least-squares slope after a warm-up; per stream: the
share of frames dropped and every state other than ``publishing`` seen while it ran.

Churn: ``--cycles`` times, a CV worker in this process (tests.support.services.cv_worker: the
SDK) opens a stream and sends frames; once an encoder publishes it, it is stopped the way an
operator stops it (``framecast stream stop``: a stop request to capture), the worker closes it,
and the cycle ends when it is stopped. Baselines are read after one warm-up cycle (thread pools
and connections made on first use are no leak) and after the last cycle: FFmpeg children per
encoder, descriptors of this process and of each service, threads of each service, the streams'
entries under /dev/shm. Back to baseline: each at most what it was, within SETTLE_S of the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import procs, report
from .capacity import mark
from .options import Options
from .transport import ROOT, read_line, tell

WIDTH, HEIGHT, FPS = 640, 360, 30
STREAMS = 4
ENCODERS = ("encoder-a", "encoder-b")
SERVICES = ("auth", "capture", *ENCODERS)
SELF = "bench (this process)"
PRODUCER = "producer (SDK, 4 streams)"
DEFAULT_MINUTES, QUICK_MINUTES = 10.0, 1.0
DEFAULT_CYCLES, QUICK_CYCLES = 50, 10
WARMUP_S = 30.0  # left out of the RSS slopes (at most half the run): buffers and caches filling up
SAMPLE_S = 5.0
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
SETTLE_S = 15.0  # how long after the last cycle the resources may take to come back


@dataclass
class Stack:
    """The running services and how to reach and measure them."""

    nats_url: str
    server: str
    """What stands in for MediaMTX, in words."""
    bus: Any
    store: Any
    pids: dict[str, int]
    """Every long-lived process by name: this one, nats-server, MediaMTX, auth, capture, encoders."""
    logs: Path
    sink: Any = None
    """The RtspSink when there is no MediaMTX (it counts frames per path)."""
    exit_codes: dict[str, int | None] = field(default_factory=dict)

    def ffmpegs(self, encoder: str) -> list[tuple[int, str]]:
        """(pid, command line) of the publishing FFmpeg processes of ``encoder``."""
        return [(pid, cmd) for pid, cmd in procs.children_of(self.pids[encoder]) if "-f rtsp" in cmd]


def _entries(prefix: str) -> list[str]:
    """The rings (segment and semaphores) of the streams whose id starts with ``prefix``, under /dev/shm."""
    from framecast.frames.ring import NAME_PREFIX

    ring = NAME_PREFIX + prefix
    return sorted(e for e in os.listdir("/dev/shm") if e.startswith((ring, f"sem.{ring}")))


@asynccontextmanager
async def stack() -> AsyncIterator[Stack]:
    """nats-server, MediaMTX (or the sink), and auth, capture and two encoders as processes."""
    from framecast.devstack.nats import NatsServer
    from framecast.proto.bus import Bus
    from framecast.proto.store import StateStore
    from tests.support.real_mediamtx import BINARY, real_mediamtx
    from tests.support.rtsp import free_port

    from .rtsp_sink import RtspSink

    async with AsyncExitStack() as exits:
        tmp = Path(exits.enter_context(tempfile.TemporaryDirectory(prefix="framecast-bench-soak-")))
        nats = await NatsServer().start()
        exits.push_async_callback(nats.stop)
        pids = {SELF: os.getpid(), "nats-server": nats._process.pid if nats._process else 0}
        auth_addr = f"127.0.0.1:{free_port()}"
        sink = None
        if BINARY is not None:
            real = await exits.enter_async_context(real_mediamtx(tmp, auth_addr))
            assert real.process is not None
            rtsp, server, pids["MediaMTX"] = real.rtsp, f"MediaMTX ({BINARY})", real.process.pid
        else:
            sink = await exits.enter_async_context(RtspSink())
            rtsp, server = sink.url, "bench/rtsp_sink.py (no MediaMTX binary here)"
        base = dict(os.environ, FRAMECAST_NATS_URL=nats.url, FRAMECAST_LOG_LEVEL="warning",
                    FRAMECAST_LOG_FORMAT="text")
        ready = {"auth": f"http://{auth_addr}/readyz"}
        env = {"auth": dict(base, FRAMECAST_INSTANCE_ID="auth", FRAMECAST_AUTH_ADDR=auth_addr,
                            FRAMECAST_AUTH_KEY_DIR=str(tmp / "keys"))}
        for name in SERVICES[1:]:
            health = f"127.0.0.1:{free_port()}"
            ready[name] = f"http://{health}/readyz"
            env[name] = dict(base, FRAMECAST_INSTANCE_ID=name, FRAMECAST_HEALTH_ADDR=health)
            if name in ENCODERS:
                env[name].update(FRAMECAST_MEDIAMTX_RTSP=rtsp, FRAMECAST_ENCODER="libx264")
        logs = {name: exits.enter_context((tmp / f"{name}.log").open("wb")) for name in SERVICES}
        running: dict[str, subprocess.Popen[bytes]] = {}
        st = Stack(nats.url, server, None, None, pids, tmp, sink)

        async def stop_all() -> None:  # in parallel; each gets SIGTERM and shuts down gracefully
            codes = await asyncio.gather(*(asyncio.to_thread(procs.stop, proc, 0.0, STOP_TIMEOUT_S)
                                           for proc in running.values()))
            st.exit_codes.update(zip(running, codes, strict=True))

        exits.push_async_callback(stop_all)

        async def start(name: str) -> None:
            running[name] = await procs.start_service(
                name.partition("-")[0], env[name], ready[name], timeout=START_TIMEOUT_S,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=logs[name])

        async with asyncio.TaskGroup() as group:
            for name in SERVICES:
                group.create_task(start(name))
        pids.update({name: running[name].pid for name in SERVICES})
        st.bus = await Bus.connect(nats.url, client_id=f"bench-soak-{os.getpid()}")
        exits.push_async_callback(st.bus.close)
        st.store = await StateStore.open(st.bus, "bench-soak")
        yield st


def _log_warnings(st: Stack) -> dict[str, Any]:
    """Per service: how many lines it logged at WARNING or above, and the last few."""
    found = {}
    for name in SERVICES:
        lines = (st.logs / f"{name}.log").read_text(errors="replace").splitlines()
        bad = [line for line in lines if " WARNING " in line or " ERROR " in line or " CRITICAL " in line]
        found[name] = {"count": len(bad), "last": bad[-3:]}
    return found


# ----- soak --------------------------------------------------------------------------------------


async def _follow(store: Any, stream_id: str, seen: list[tuple[float, str, str]]) -> None:
    """Every state ``stream_id`` goes through: (monotonic time, state, reason)."""
    async for _, record in store.watch(stream_id):
        if record is not None and (not seen or seen[-1][1] != record.state.value):
            seen.append((time.monotonic(), record.state.value, record.reason))


def _stream_of(command: str, ids: list[str]) -> str | None:
    """The stream an FFmpeg command line publishes (its output URL ends in /<id> or /<id>?token=...)."""
    for arg in command.split():
        for stream_id in ids:
            if arg.endswith(f"/{stream_id}") or f"/{stream_id}?" in arg:
                return stream_id
    return None


async def _sample(st: Stack, producer: subprocess.Popen[bytes], ids: list[str], prefix: str,
                  stats: dict[str, Any], began: float) -> dict[str, Any]:
    sent = await mark(producer)
    pids = {**st.pids, PRODUCER: producer.pid}
    for encoder in ENCODERS:
        for pid, command in st.ffmpegs(encoder):
            stream_id = _stream_of(command, ids)
            if stream_id is not None:
                pids[f"FFmpeg stream {ids.index(stream_id)}"] = pid
    latest = {i: stats[i] for i in ids if i in stats}
    return {
        "t": time.monotonic() - began,
        "procs": {name: {"pid": pid, **procs.resources(pid)} for name, pid in pids.items()},
        "shm_entries": len(_entries(prefix)),
        "sent": dict(zip(ids, sent["sent"], strict=True)),
        "stats": {i: {"at": s.at, "frames_in": s.frames_in, "frames_out": s.frames_out, "dropped": s.dropped,
                      "repeated": s.repeated, "restarts": s.restarts} for i, s in latest.items()},
        "at_server": {i: st.sink.frames[i] for i in ids} if st.sink is not None else {},
    }


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB) in MiB per hour; NaN with fewer than 3 points."""
    points = [(t, v) for t, v in points if v == v]
    if len(points) < 3 or len({t for t, _ in points}) < 2:
        return float("nan")
    return statistics.linear_regression([t / 3600 for t, _ in points], [v for _, v in points]).slope


async def soak(st: Stack, seconds: float, options: Options) -> dict[str, Any]:
    from framecast.proto import subjects
    from framecast.proto.messages import StreamStats
    from framecast.proto.states import StreamState
    from tests.support.services import wait_for_state

    prefix = f"bench-soak-{secrets.token_hex(2)}-"
    latest: dict[str, StreamStats] = {}

    async def on_stats(message: StreamStats, _msg: object) -> None:
        if message.stream_id.startswith(prefix):
            latest[message.stream_id] = message

    subscription = await st.bus.subscribe(subjects.STATS_ALL, StreamStats, on_stats)
    producer_log = tempfile.TemporaryFile()
    producer = procs.spawn(
        [sys.executable, "-m", "bench.producer", "sdk", "--width", str(WIDTH), "--height", str(HEIGHT),
         "--fps", str(FPS), "--streams", str(STREAMS), "--prefix", prefix, "--url", st.nats_url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=producer_log, cwd=ROOT,
    )
    history: dict[str, list[tuple[float, str, str]]] = {}
    followers: list[asyncio.Task[None]] = []
    interval = min(SAMPLE_S, max(0.5, seconds / 12))
    samples: list[dict[str, Any]] = []
    try:
        ids: list[str] = (await asyncio.to_thread(read_line, producer, START_TIMEOUT_S))["ready"]
        for stream_id in ids:
            history[stream_id] = []
            followers.append(asyncio.create_task(_follow(st.store, stream_id, history[stream_id])))
        tell(producer, "go")
        records = await asyncio.gather(*(wait_for_state(st.store, i, StreamState.PUBLISHING,
                                                        timeout=START_TIMEOUT_S) for i in ids))
        options.progress(f"soak: {len(ids)} streams publishing; running for {seconds / 60:g} min")
        began = time.monotonic()
        while True:
            samples.append(await _sample(st, producer, ids, prefix, latest, began))
            elapsed = time.monotonic() - began
            if elapsed >= seconds:
                break
            if int(elapsed / 60) != int((elapsed - interval) / 60) and elapsed >= 60:
                options.progress(f"soak: {elapsed / 60:.0f} of {seconds / 60:g} min")
            # the sampling period, not a wait for something to happen
            await asyncio.sleep(min(began + len(samples) * interval, began + seconds) - time.monotonic())
        ended = time.monotonic()
        tell(producer, "stop")
        await asyncio.to_thread(procs.stop, producer, STOP_TIMEOUT_S)
        finals = await asyncio.gather(*(wait_for_state(st.store, i, StreamState.STOPPED, StreamState.FAILED,
                                                       timeout=STOP_TIMEOUT_S) for i in ids))
        left = _entries(prefix)
    finally:
        procs.stop(producer, 0.0)
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()
        producer_log.seek(0)
        producer_lines = producer_log.read().decode(errors="replace").splitlines()
        producer_log.close()
    return _soak_figures(ids, records, finals, history, samples, began, ended, seconds, interval, left,
                         producer_lines)


def _soak_figures(ids: list[str], records: list[Any], finals: list[Any], history: dict[str, list[Any]],
                  samples: list[dict[str, Any]], began: float, ended: float, seconds: float, interval: float,
                  left: list[str], producer_lines: list[str]) -> dict[str, Any]:
    warmup = min(WARMUP_S, seconds / 2)
    names = list(dict.fromkeys(name for s in samples for name in s["procs"]))
    processes = []
    for name in names:
        seen = [(s["t"], s["procs"][name]) for s in samples if name in s["procs"]]
        alive = [(t, r) for t, r in seen if r["rss_mib"] == r["rss_mib"]]
        first, last = (alive[0][1], alive[-1][1]) if alive else ({}, {})
        processes.append({
            "process": name,
            "pids": sorted({r["pid"] for _, r in seen}),
            "rss_start_mib": first.get("rss_mib", float("nan")),
            "rss_end_mib": last.get("rss_mib", float("nan")),
            "rss_slope_mib_per_h": _slope([(t, r["rss_mib"]) for t, r in alive if t >= warmup]),
            "fds_start": first.get("fds", float("nan")),
            "fds_end": last.get("fds", float("nan")),
            "threads_end": last.get("threads", float("nan")),
            "rss_mib_series": [r["rss_mib"] for _, r in seen],
            "t_s_series": [t for t, _ in seen],
        })
    streams = []
    for index, (stream_id, record, final) in enumerate(zip(ids, records, finals, strict=True)):
        with_stats = [s for s in samples if stream_id in s["stats"]]
        a, b = (with_stats[0]["stats"][stream_id], with_stats[-1]["stats"][stream_id]) if with_stats else ({}, {})
        frames_in = b.get("frames_in", 0) - a.get("frames_in", 0)
        dropped = b.get("dropped", 0) - a.get("dropped", 0)
        span = b.get("at", 0.0) - a.get("at", 0.0)
        sent_span = samples[-1]["t"] - samples[0]["t"]
        at_server = samples[-1]["at_server"].get(stream_id, 0) - samples[0]["at_server"].get(stream_id, 0)
        published_at = next((t for t, state, _ in history[stream_id] if state == "publishing"), began)
        others = [{"at_s": round(t - began, 1), "state": state, "reason": reason}
                  for t, state, reason in history[stream_id] if published_at < t <= ended and state != "publishing"]
        streams.append({
            "stream": index,
            "stream_id": stream_id,
            "encoder": record.encoder_id,
            "sent": samples[-1]["sent"][stream_id] - samples[0]["sent"][stream_id],
            "sent_fps": (samples[-1]["sent"][stream_id] - samples[0]["sent"][stream_id]) / sent_span
            if sent_span > 0 else float("nan"),
            "frames_in": frames_in,
            "dropped": dropped,
            "drop_pct": 100 * dropped / (frames_in + dropped) if frames_in + dropped else float("nan"),
            "fps_out": (b.get("frames_out", 0) - a.get("frames_out", 0)) / span if span > 0 else float("nan"),
            "repeated": b.get("repeated", 0) - a.get("repeated", 0),
            "restarts": b.get("restarts", 0),
            "fps_at_server": at_server / sent_span if samples[0]["at_server"] and sent_span > 0 else float("nan"),
            "states_other_than_publishing": others,
            "final_state": final.state.value,
            "history": [{"at_s": round(t - began, 1), "state": s, "reason": r} for t, s, r in history[stream_id]],
        })
    return {
        "seconds": ended - began,
        "sample_s": interval,
        "samples": len(samples),
        "warmup_s": warmup,
        "processes": processes,
        "streams": streams,
        "shm_entries_running": max(s["shm_entries"] for s in samples),
        "shm_entries_after_stop": len(left),
        "ends_not_confirmed_by_encoder": sum("did not confirm the end" in line for line in producer_lines),
        "producer_log_tail": producer_lines[-5:],
    }


# ----- churn -------------------------------------------------------------------------------------


def _baseline(st: Stack, prefix: str) -> dict[str, float]:
    values: dict[str, float] = {f"FFmpeg processes of {name}": len(st.ffmpegs(name)) for name in ENCODERS}
    for name in (SELF, *SERVICES):
        found = procs.resources(st.pids[name])
        values[f"open fds: {name}"] = found["fds"]
        if name != SELF:  # this process's thread pools grow with its own waits, not with streams
            values[f"threads: {name}"] = found["threads"]
    values["/dev/shm entries of these streams"] = len(_entries(prefix))
    return values


async def _cycle(st: Stack, stream_id: str) -> dict[str, Any]:
    """Open with the SDK, wait for publishing, ask capture to stop it, close it, wait for stopped."""
    from framecast.proto import subjects
    from framecast.proto.messages import Accepted, StopStream
    from framecast.proto.states import StreamState
    from tests.support.services import cv_worker, wait_for_state

    began = time.monotonic()
    async with cv_worker(st.nats_url, stream_id, width=WIDTH, height=HEIGHT, fps=FPS):
        record = await wait_for_state(st.store, stream_id, StreamState.PUBLISHING, timeout=START_TIMEOUT_S)
        publishing = time.monotonic()
        await st.bus.request(subjects.STREAM_STOP, StopStream(stream_id=stream_id, reason="bench churn"),
                             Accepted, service="capture", timeout=10)
    # the worker was told to stop; closing the stream tells the encoder, which confirms the end
    final = await wait_for_state(st.store, stream_id, StreamState.STOPPED, StreamState.FAILED,
                                 timeout=STOP_TIMEOUT_S)
    ended = time.monotonic()
    return {"stream_id": stream_id, "encoder": record.encoder_id, "start_s": publishing - began,
            "stop_s": ended - publishing, "cycle_s": ended - began, "final_state": final.state.value,
            "reason": final.reason}


async def churn(st: Stack, cycles: int, options: Options) -> dict[str, Any]:
    from tests.support.services import eventually

    prefix = f"bench-churn-{secrets.token_hex(2)}-"
    warmup = await _cycle(st, f"{prefix}w")
    with contextlib.suppress(AssertionError):  # an FFmpeg still there shows in the baseline
        await eventually(lambda: not any(st.ffmpegs(e) for e in ENCODERS), "the warm-up's FFmpeg exits", SETTLE_S)
    before = _baseline(st, prefix)
    runs: list[dict[str, Any]] = []
    for n in range(cycles):
        try:
            runs.append(await _cycle(st, f"{prefix}{n}"))
        except Exception as exc:  # a cycle that fails is counted; the others still run
            runs.append({"stream_id": f"{prefix}{n}", "error": f"{type(exc).__name__}: {exc}"})
        if (n + 1) % 10 == 0 or n + 1 == cycles:
            options.progress(f"churn: {n + 1} of {cycles} cycles")
    settled_in = time.monotonic()

    def back() -> bool:
        now = _baseline(st, prefix)
        return all(now[key] <= before[key] for key in before)

    with contextlib.suppress(AssertionError):  # not back within SETTLE_S: reported as such
        await eventually(back, "resources back to their baseline", SETTLE_S)
    settled_in = time.monotonic() - settled_in
    after = _baseline(st, prefix)
    done = [r for r in runs if "error" not in r]
    cycle_s = [r["cycle_s"] for r in done]
    return {
        "cycles": cycles,
        "failed": [r for r in runs if "error" in r],
        "not_stopped": [r for r in done if r["final_state"] != "stopped"],
        "baseline": {key: {"before": before[key], "after": after[key], "back": after[key] <= before[key]}
                     for key in before},
        "back_to_baseline": all(after[key] <= before[key] for key in before),
        "settled_s": settled_in,
        "cycle_p50_s": report.percentile(cycle_s, 50),
        "cycle_p95_s": report.percentile(cycle_s, 95),
        "start_p50_s": report.percentile([r["start_s"] for r in done], 50),
        "stop_p50_s": report.percentile([r["stop_s"] for r in done], 50),
        "per_encoder": dict(Counter(r["encoder"] for r in done)),
        "warmup_cycle": warmup,
        "runs": runs,
    }


# ----- the group ---------------------------------------------------------------------------------


async def _run_all(options: Options, seconds: float, cycles: int) -> dict[str, Any]:
    async with stack() as st:
        options.progress(f"soak: stack up (auth, capture, {', '.join(ENCODERS)}; {st.server})")
        try:
            soaked = await soak(st, seconds, options)
        except Exception as exc:  # a failed part is reported, the other still runs
            soaked = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            churned = await churn(st, cycles, options)
        except Exception as exc:
            churned = {"error": f"{type(exc).__name__}: {exc}"}
        warnings = _log_warnings(st)
    return {"server": st.server, "soak": soaked, "churn": churned, "service_log_warnings": warnings,
            "service_exit_codes": st.exit_codes}


def _soak_table(soaked: dict[str, Any], minutes: float, server: str) -> str:
    title = (f"soak: {STREAMS} streams {WIDTH}x{HEIGHT}@{FPS} for {minutes:g} min, SDK (shm) -> encoder-a/-b "
             f"(libx264) -> {server.split(' (')[0]}")
    if "error" in soaked:
        return f"{title}\nfailed: {soaked['error']}"
    rows = [[p["process"], p["rss_start_mib"], p["rss_end_mib"],
             p["rss_end_mib"] / p["rss_start_mib"] if p["rss_start_mib"] else float("nan"),
             p["rss_slope_mib_per_h"], p["fds_start"], p["fds_end"], p["threads_end"]]
            for p in soaked["processes"]]
    text = report.table(["process", "RSS start MiB", "RSS end MiB", "end/start", "RSS slope MiB/h",
                         "fds start", "fds end", "threads end"], rows, title=title)
    rows = [[s["stream"], s["encoder"], s["sent_fps"], s["fps_out"], s["frames_in"], s["dropped"], s["drop_pct"],
             s["repeated"], s["restarts"], s["fps_at_server"],
             ", ".join(f"{o['state']} at {o['at_s']:g} s" for o in s["states_other_than_publishing"]) or "none"]
            for s in soaked["streams"]]
    text += "\n\n" + report.table(["stream", "encoder", "sent fps", "fps out", "frames in", "dropped", "drop %",
                                   "repeated", "restarts", "at server fps", "states other than publishing"], rows)
    slopes = [p for p in soaked["processes"] if p["rss_slope_mib_per_h"] == p["rss_slope_mib_per_h"]]
    worst = max(slopes, key=lambda p: p["rss_slope_mib_per_h"], default=None)
    if worst is not None:
        text += (f"\nlargest RSS slope: {worst['rss_slope_mib_per_h']:+.2f} MiB/h ({worst['process']}), "
                 f"{100 * worst['rss_slope_mib_per_h'] / worst['rss_start_mib']:+.1f} % of its start per hour "
                 f"(after {soaked['warmup_s']:g} s of warm-up, {soaked['samples']} samples every "
                 f"{soaked['sample_s']:g} s)")
    drops = [s["drop_pct"] for s in soaked["streams"] if s["drop_pct"] == s["drop_pct"]]
    others = sum(len(s["states_other_than_publishing"]) for s in soaked["streams"])
    text += (f"\ndrops: worst stream {max(drops, default=float('nan')):.3f} %; states other than publishing: "
             f"{others or 'none'}; /dev/shm entries of these streams: {soaked['shm_entries_running']} while "
             f"running, {soaked['shm_entries_after_stop']} after they stopped; ends not confirmed by the encoder: "
             f"{soaked['ends_not_confirmed_by_encoder']}")
    return text


def _churn_table(churned: dict[str, Any], cycles: int) -> str:
    title = f"churn: {cycles} start/stop cycles (SDK open -> publishing -> stop request -> stopped) across " \
            f"{len(ENCODERS)} encoders"
    if "error" in churned:
        return f"{title}\nfailed: {churned['error']}"
    rows = [[key, v["before"], v["after"], "yes" if v["back"] else "NO"] for key, v in churned["baseline"].items()]
    text = report.table(["resource", "before", "after", "back to baseline"], rows, title=title)
    text += (f"\nback to baseline: {'yes' if churned['back_to_baseline'] else 'NO'} "
             f"({churned['settled_s']:.1f} s after the last cycle)"
             f"\ncycle p50 {churned['cycle_p50_s']:.2f} s, p95 {churned['cycle_p95_s']:.2f} s, p95/p50 "
             f"{churned['cycle_p95_s'] / churned['cycle_p50_s']:.2f}; open -> publishing p50 "
             f"{churned['start_p50_s']:.2f} s, stop request -> stopped p50 {churned['stop_p50_s']:.2f} s"
             f"\nstreams per encoder: " + ", ".join(f"{k} {v}" for k, v in sorted(churned["per_encoder"].items()))
             + f"; cycles failed: {len(churned['failed'])}; ended other than stopped: {len(churned['not_stopped'])}")
    text += "".join(f"\n  {r['stream_id']}: {r['error']}" for r in churned["failed"][:5])
    return text


def run(options: Options) -> dict[str, Any]:
    minutes = options.minutes or (QUICK_MINUTES if options.quick else DEFAULT_MINUTES)
    cycles = options.cycles or (QUICK_CYCLES if options.quick else DEFAULT_CYCLES)
    result = asyncio.run(_run_all(options, minutes * 60, cycles))
    warnings = ", ".join(f"{name} {w['count']}" for name, w in result["service_log_warnings"].items())
    text = (f"{_soak_table(result['soak'], minutes, result['server'])}\n\n{_churn_table(result['churn'], cycles)}"
            f"\nservice log lines at WARNING or above: {warnings}")
    return {
        "group": "soak",
        "settings": {"size": f"{WIDTH}x{HEIGHT}", "fps": FPS, "streams": STREAMS, "minutes": minutes,
                     "cycles": cycles, "encoders": ENCODERS, "encoder": "libx264", "server": result["server"],
                     "warmup_s": WARMUP_S, "sample_s": SAMPLE_S, "settle_s": SETTLE_S},
        **result,
        "table": text,
    }

"""Benchmark 1 (issues 3 and 4): moving raw frames into FFmpeg's stdin, four ways, unpaced.

FFmpeg reads ``-f rawvideo ... -i pipe:0`` and writes ``-f null -``: it decodes nothing and
encodes nothing, so what is measured is the cost of getting frames into it.

- (a) one process, ``proc.stdin.write(frame.tobytes())`` into the default 64 KiB pipe;
- (b) one process, ``os.write`` of a memoryview into a pipe raised to 1 MiB (``raise_pipe_size``);
- (c) a producer process writing a shared-memory ring (``RingWriter``, what the SDK's ``send``
  does) as fast as it can; here a ``RingReader`` and the encoder's real ``Pump`` write each
  frame from its slot to FFmpeg (latest frame wins: frames the pump had no time for are
  dropped and counted). On 2 cores that producer spends a core making frames that are then
  dropped, so
- (c2) is (c) with the producer flow-controlled: it writes a frame only for each frame the
  reader took (a POSIX semaphore, posted by a thin wrapper around ``RingReader.wait_frame``,
  2 frames of credit) - the transport's own cost, without frames made only to be dropped;
- (d) the same over NATS: ``NatsFrameWriter`` -> nats-server -> ``NatsFrameReader`` -> ``Pump``.
  NATS has no back-pressure from a subscriber to a publisher: a publisher faster than the
  reader fills the server's 64 MB buffer for the reader, and the server disconnects it as a
  slow consumer. So in (d) the producer is flow-controlled: it stays at most ~24 MB of frames
  ahead of the count of frames received that this process publishes every 2 ms (to an inbox);
- (e) (d) without that flow control, for at most 2 s: what an unpaced publisher does to the
  reader (slow-consumer disconnects counted);
- (w) VidGear's WriteGear (a popular numpy -> FFmpeg library), given the same FFmpeg binary
  (``custom_ffmpeg=``) and the same ``-f null`` output: what a script built on a library
  rather than a bare loop gets (it writes ``frame.tobytes()`` into the default pipe, after
  checking each frame's shape and type).

The pump paces to the stream's fps; it is given an fps so high (1,000,000) that its pacing
never waits, which leaves every other line of its write path (liveness checks, non-blocking
writes with poll, release) in the measurement. CPU per frame is the CPU time of every process
involved (producer, this process, FFmpeg, nats-server) in the window, divided by the frames
delivered to FFmpeg in it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import select
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from framecast.proto.messages import VideoFormat

from . import procs, report
from .options import Options
from .producer import DISTINCT_FRAMES
from .producer import frames as pattern_frames

SIZES = ((640, 360), (1920, 1080))
PATHS = {
    "a": "1 proc, stdin.write(tobytes())",
    "b": "1 proc, os.write, 1 MiB pipe",
    "c": "2 procs, shm ring + Pump",
    "c2": "2 procs, shm ring + Pump, producer flow-controlled",
    "d": "2 procs, NATS + Pump, flow-controlled",
    "e": "2 procs, NATS + Pump, publisher unthrottled",
    "w": "1 proc, VidGear WriteGear",
}
TRANSPORTS = {"c": "shm", "c2": "shm-credit", "d": "nats", "e": "nats-unthrottled"}
SHM_CREDIT_WINDOW = 2
CREDIT_BYTES = 24 << 20  # NATS flow control: frames in flight, in bytes (the server cuts a client at 64 MB)
CREDIT_EVERY_S = 0.002
UNTHROTTLED_LIMIT_S = 2.0
DEFAULT_REPEAT = 5
DEFAULT_FRAMES = {(640, 360): 1500, (1920, 1080): 250}
QUICK_FRAMES = {(640, 360): 300, (1920, 1080): 60}
UNPACED_FPS = 1_000_000
NATS_DEFAULT_MAX_PAYLOAD = 1 << 20
NATS_BIG_MAX_PAYLOAD = 8 << 20
ROOT = Path(__file__).resolve().parent.parent
_TIMEOUT_S = 120.0


@dataclass
class Run:
    """One measured run of one path at one size."""

    frames: int = 0
    seconds: float = 0.0
    fps: float = float("nan")
    cpu_s: dict[str, float] = field(default_factory=dict)
    cpu_ms_per_frame: float = float("nan")
    produced: int = 0
    dropped: int = 0
    pipe_bytes: int = 0
    max_payload: int = 0
    others_cpu_pct: float = float("nan")
    """CPU (% of the machine) used by processes not in this run, during the window: neighbours."""
    slow_consumer_cuts: int = 0
    """Times nats-server cut the reader off as a slow consumer (from its log, whole run)."""
    error: str = ""

    def finish(self, meter: procs.CpuMeter, delivered: int) -> None:
        self.frames = delivered
        self.seconds = meter.wall
        self.cpu_s = dict(meter.used)
        self.fps = delivered / meter.wall if meter.wall > 0 else float("nan")
        self.cpu_ms_per_frame = 1000 * meter.total / delivered if delivered else float("nan")
        cpus = len(os.sched_getaffinity(0))
        self.others_cpu_pct = max(0.0, 100 * (meter.machine_busy - meter.total / meter.wall / cpus))


def ffmpeg_sink(fmt: VideoFormat) -> subprocess.Popen[bytes]:
    """FFmpeg reading raw frames from its stdin and throwing them away."""
    import imageio_ffmpeg

    return procs.spawn(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-nostats",
            "-f", "rawvideo", "-pix_fmt", fmt.pix_fmt, "-s", f"{fmt.width}x{fmt.height}",
            "-framerate", str(fmt.fps), "-i", "pipe:0", "-f", "null", "-",
        ],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def start_producer(mode: str, fmt: VideoFormat, *extra: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    """``python -m bench.producer MODE``; returns it and its ``ready`` line."""
    proc = procs.spawn(
        [sys.executable, "-m", "bench.producer", mode, "--width", str(fmt.width),
         "--height", str(fmt.height), "--fps", str(fmt.fps), *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
    )
    try:
        ready = read_line(proc, 60.0)
    except BaseException:
        procs.stop(proc)
        raise
    return proc, ready


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    """The next JSON line the producer prints."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else b""
    if not line:
        raise RuntimeError(f"producer said nothing within {timeout:g} s (exit code {proc.poll()})")
    result: dict[str, Any] = json.loads(line)
    return result


def tell(proc: subprocess.Popen[bytes], command: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(command.encode() + b"\n")
    proc.stdin.flush()


# ----- one process -----------------------------------------------------------------------------


def run_single(fmt: VideoFormat, images: list[np.ndarray], frames: int, warmup: int, *, naive: bool) -> Run:
    run = Run()
    sink = ffmpeg_sink(fmt)
    assert sink.stdin is not None
    try:
        write: Callable[[int], object]
        if naive:
            stdin = sink.stdin

            def write(n: int) -> object:
                return stdin.write(images[n % DISTINCT_FRAMES].tobytes())
        else:
            from framecast.encoder.pump import raise_pipe_size

            fd = sink.stdin.fileno()
            run.pipe_bytes = raise_pipe_size(fd)
            views = [memoryview(image).cast("B") for image in images]

            def write(n: int) -> object:
                view = views[n % DISTINCT_FRAMES]
                done = os.write(fd, view)
                while done < len(view):
                    done += os.write(fd, view[done:])
                return done

        for n in range(warmup):
            write(n)
        meter = procs.CpuMeter({"consumer": [procs.SELF], "ffmpeg": [sink.pid]})
        meter.start()
        for n in range(warmup, warmup + frames):
            write(n)
        meter.stop()
        run.finish(meter, frames)
        run.produced = frames
    finally:
        procs.stop(sink)
    return run


def run_writegear(fmt: VideoFormat, images: list[np.ndarray], frames: int, warmup: int) -> Run:
    """(w): WriteGear in compression mode, FFmpeg started by its first ``write``."""
    import imageio_ffmpeg
    from vidgear.gears import WriteGear

    logging.getLogger("WriteGear").setLevel(logging.CRITICAL + 1)  # it warns about options it drops, on stderr
    run = Run()
    gear = WriteGear(output="/dev/null", compression_mode=True, custom_ffmpeg=imageio_ffmpeg.get_ffmpeg_exe(),
                     logging=False, **{"-f": "null", "-vcodec": None, "-input_framerate": fmt.fps})
    try:
        for n in range(warmup):
            gear.write(images[n % DISTINCT_FRAMES])
        sink = gear._WriteGear__process  # type: ignore[attr-defined]  # its FFmpeg, for its CPU time
        meter = procs.CpuMeter({"consumer": [procs.SELF], "ffmpeg": [sink.pid]})
        meter.start()
        for n in range(warmup, warmup + frames):
            gear.write(images[n % DISTINCT_FRAMES])
        meter.stop()
        run.finish(meter, frames)
        run.produced = frames
    finally:
        gear.close()
    return run


# ----- two processes ---------------------------------------------------------------------------


async def _until(predicate: Callable[[], bool], what: str, timeout: float = _TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.005)


async def run_pumped(fmt: VideoFormat, frames: int, warmup: int, transport: str) -> Run:
    """Frames from a producer process through ``transport`` (shm, nats, nats-unthrottled) and
    the real Pump into FFmpeg; the window ends after ``frames`` frames (or 2 s unthrottled)."""
    import nats
    import posix_ipc

    from framecast.devstack.nats import NatsServer
    from framecast.encoder.pump import Pump
    from framecast.frames import NatsFrameReader, RingReader
    from framecast.proto import subjects

    run = Run()
    sink = ffmpeg_sink(fmt)
    assert sink.stdin is not None
    producer = server = nc = reader = pump = credits = credit_sem = None
    pids: dict[str, list[int]] = {}
    try:
        if transport == "shm":
            producer, ready = start_producer("shm", fmt)
            reader = RingReader.open(ready["ready"])
        elif transport == "shm-credit":
            credit_name = f"/bench-credit-{secrets.token_hex(4)}"
            credit_sem = posix_ipc.Semaphore(credit_name, posix_ipc.O_CREX, 0o600, SHM_CREDIT_WINDOW)
            producer, ready = start_producer("shm", fmt, "--credit-sem", credit_name)
            reader = CreditedReader(RingReader.open(ready["ready"]), credit_sem)
        else:
            big = fmt.frame_size + 256 > NATS_DEFAULT_MAX_PAYLOAD
            server = await NatsServer(max_payload=NATS_BIG_MAX_PAYLOAD if big else None).start()
            run.max_payload = NATS_BIG_MAX_PAYLOAD if big else NATS_DEFAULT_MAX_PAYLOAD
            nc = await nats.connect(server.url, name="bench-consumer", max_reconnect_attempts=0)
            subject = subjects.frames(f"bench-{secrets.token_hex(3)}")
            reader = NatsFrameReader(nc, subject, fmt)
            await reader.start()
            await nc.flush()
            flow: list[str] = []
            if transport == "nats":
                inbox = nc.new_inbox()
                window = max(3, CREDIT_BYTES // fmt.frame_size)
                flow = ["--credit-subject", inbox, "--window", str(window)]
                credits = asyncio.create_task(_grant_credits(nc, inbox, reader))
            producer, ready = start_producer("nats", fmt, "--url", server.url, "--subject", subject, *flow)
            pids["nats-server"] = [server._process.pid] if server._process else []
        pids = {"producer": [producer.pid], "consumer": [procs.SELF], "ffmpeg": [sink.pid], **pids}
        pump = Pump(reader, UNPACED_FPS, name=f"bench-{transport}")
        pump.start()
        pump.attach(sink.stdin.fileno())
        run.pipe_bytes = _pipe_size(sink.stdin.fileno())
        tell(producer, "go")
        limit = UNTHROTTLED_LIMIT_S if transport == "nats-unthrottled" else _TIMEOUT_S
        ends = time.monotonic() + limit
        await _until(lambda: pump.frames_written >= warmup or time.monotonic() >= ends,
                     f"{warmup} warm-up frames through the pump")
        meter = procs.CpuMeter(pids)
        written, seen, dropped = pump.frames_written, reader.frames, reader.dropped
        meter.start()
        ends = time.monotonic() + limit
        await _until(lambda: pump.frames_written >= written + frames or time.monotonic() >= ends,
                     f"{frames} frames through the pump")
        meter.stop()
        delivered = pump.frames_written - written
        run.dropped = reader.dropped - dropped
        run.produced = reader.frames - seen + run.dropped
        run.finish(meter, delivered)
    finally:
        if credits is not None:
            credits.cancel()
        if pump is not None:
            await pump.stop()
        if producer is not None:
            procs.stop(producer)
        if reader is not None:
            if transport.startswith("shm"):
                reader.close()
                reader.unlink()  # the producer unlinks it on exit; this covers a killed one
            else:
                await reader.aclose()
        if credit_sem is not None:
            credit_sem.unlink()
            credit_sem.close()
        if nc is not None:
            await nc.close()
        if server is not None:
            run.slow_consumer_cuts = sum("Slow Consumer Detected" in line for line in server.log_tail)
            await server.stop()
        procs.stop(sink)
    return run


class CreditedReader:
    """A RingReader that posts ``credits`` for every frame ``wait_frame`` returns."""

    def __init__(self, reader: Any, credits: Any) -> None:
        self._reader = reader
        self._credits = credits

    frames = property(lambda self: self._reader.frames)
    dropped = property(lambda self: self._reader.dropped)
    closed = property(lambda self: self._reader.closed)

    def wait_frame(self, timeout: float) -> memoryview | None:
        view = self._reader.wait_frame(timeout)
        if view is not None:
            self._credits.release()
        return view  # type: ignore[no-any-return]

    def last_frame(self) -> memoryview | None:
        return self._reader.last_frame()  # type: ignore[no-any-return]

    def release(self) -> None:
        self._reader.release()

    def producer_alive(self) -> bool:
        return self._reader.producer_alive()  # type: ignore[no-any-return]

    def close(self) -> None:
        self._reader.close()

    def unlink(self) -> None:
        self._reader.unlink()


async def _grant_credits(nc: Any, inbox: str, reader: Any) -> None:
    """Tell the NATS producer every 2 ms how many frames the reader has received."""
    while True:
        await nc.publish(inbox, str(reader.frames + reader.dropped).encode())
        await asyncio.sleep(CREDIT_EVERY_S)


def _pipe_size(fd: int) -> int:
    import fcntl

    try:
        return fcntl.fcntl(fd, 1032)  # F_GETPIPE_SZ
    except OSError:
        return 0


# ----- the group ---------------------------------------------------------------------------------


def _label(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def run(options: Options) -> dict[str, Any]:
    """Every path at every size, ``options.repeat`` times interleaved; medians reported."""
    frames_for = QUICK_FRAMES if options.quick else DEFAULT_FRAMES
    repeat = options.repeat or (1 if options.quick else DEFAULT_REPEAT)
    runs: dict[str, dict[str, list[Run]]] = {_label(s): {p: [] for p in PATHS} for s in SIZES}
    settings: dict[str, dict[str, int]] = {}
    images = {s: pattern_frames(VideoFormat(width=s[0], height=s[1], fps=30)) for s in SIZES}
    for rep in range(repeat):
        for size in SIZES:
            fmt = VideoFormat(width=size[0], height=size[1], fps=30, pix_fmt="bgr24")
            frames = options.frames or frames_for[size]
            warmup = max(5, frames // 10)
            settings[_label(size)] = {"frames": frames, "warmup": warmup, "frames_nats": max(5, frames // 2)}
            for path in PATHS:
                n, w = frames, warmup
                if path in ("d", "e"):  # NATS is 5-20x slower: half the frames keeps the run short
                    n, w = max(5, frames // 2), max(5, warmup // 2)
                try:
                    if path in ("a", "b"):
                        result = run_single(fmt, images[size], n, w, naive=path == "a")
                    elif path == "w":
                        result = run_writegear(fmt, images[size], n, w)
                    else:
                        result = asyncio.run(run_pumped(fmt, n, w, TRANSPORTS[path]))
                except Exception as exc:  # a failed row is reported, the rest still run
                    result = Run(error=f"{type(exc).__name__}: {exc}")
                runs[_label(size)][path].append(result)
                options.progress(
                    f"transport {_label(size)} ({path}) run {rep + 1}/{repeat}: "
                    + (result.error or f"{result.fps:,.0f} fps, {result.cpu_ms_per_frame:.2f} CPU-ms/frame")
                )
    summary = summarise(runs)
    text = render(summary)
    return {
        "group": "transport",
        "settings": {"repeat": repeat, "sizes": settings, "pix_fmt": "bgr24", "unpaced_pump_fps": UNPACED_FPS,
                     "nats_max_payload": {"640x360": NATS_DEFAULT_MAX_PAYLOAD, "1920x1080": NATS_BIG_MAX_PAYLOAD}},
        "paths": PATHS,
        "summary": summary,
        "runs": {size: {p: [asdict(r) for r in rs] for p, rs in by_path.items()} for size, by_path in runs.items()},
        "table": text,
    }


def summarise(runs: dict[str, dict[str, list[Run]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for size, by_path in runs.items():
        rows: dict[str, Any] = {}
        for path, rs in by_path.items():
            ok = [r for r in rs if not r.error]
            parts = sorted({k for r in ok for k in r.cpu_s})
            rows[path] = {
                "fps": report.median([r.fps for r in ok]),
                "fps_min": min((r.fps for r in ok), default=float("nan")),
                "fps_max": max((r.fps for r in ok), default=float("nan")),
                "cpu_ms_per_frame": report.median([r.cpu_ms_per_frame for r in ok]),
                "cpu_ms_per_frame_by_process": {
                    k: report.median([1000 * r.cpu_s.get(k, 0.0) / r.frames for r in ok if r.frames]) for k in parts
                },
                "produced_fps": report.median([r.produced / r.seconds for r in ok if r.seconds]),
                "dropped_pct": report.median([100 * r.dropped / r.produced for r in ok if r.produced]),
                "others_cpu_pct": report.median([r.others_cpu_pct for r in ok]),
                "slow_consumer_cuts": report.median([r.slow_consumer_cuts for r in ok]),
                "runs": len(ok),
                "errors": [r.error for r in rs if r.error],
            }
        a, b, c, c2 = rows["a"], rows["b"], rows["c"], rows["c2"]
        for row in rows.values():
            row["fps_vs_a"] = row["fps"] / a["fps"]
            row["cpu_vs_a"] = row["cpu_ms_per_frame"] / a["cpu_ms_per_frame"]
        rows["c_over_b"] = {
            "fps": c["fps"] / b["fps"],
            "cpu_per_frame": c["cpu_ms_per_frame"] / b["cpu_ms_per_frame"],
            "goal": "two-process shm within 10% of the single-process loop (fps ratio >= 0.90)",
            "met": bool(c["fps"] / b["fps"] >= 0.90),
        }
        rows["c2_over_b"] = {
            "fps": c2["fps"] / b["fps"],
            "cpu_per_frame": c2["cpu_ms_per_frame"] / b["cpu_ms_per_frame"],
            "met": bool(c2["fps"] / b["fps"] >= 0.90),
        }
        out[size] = rows
    return out


def render(summary: dict[str, Any]) -> str:
    rows = []
    for size, by_path in summary.items():
        for path, label in PATHS.items():
            row = by_path[path]
            split = row["cpu_ms_per_frame_by_process"]
            rows.append([
                size, f"({path}) {label}", row["fps"], row["fps_vs_a"], row["cpu_ms_per_frame"], row["cpu_vs_a"],
                "/".join(f"{split[k]:.2f}" for k in ("producer", "consumer", "ffmpeg", "nats-server") if k in split)
                or "-",
                row["produced_fps"], row["dropped_pct"],
                f"{row['fps_min']:,.0f}-{row['fps_max']:,.0f}" if row["runs"] > 1 else "-",
                row["slow_consumer_cuts"] if path in ("d", "e") else "-",
            ])
    text = report.table(
        ["size", "path", "fps", "fps/(a)", "CPU-ms/frame", "CPU/(a)", "CPU split ms (prod/cons/ffmpeg/nats)",
         "produced fps", "dropped %", "fps range", "slow-consumer cuts"],
        rows,
        title="transport: frames into FFmpeg (-f null), unpaced, medians",
    )
    others = [row["others_cpu_pct"] for by_path in summary.values() for p, row in by_path.items() if p in PATHS]
    lines = [text, f"(other tenants used a median {report.median(others):.0f}% of the machine during these runs)", ""]
    for size, by_path in summary.items():
        for key in ("c", "c2"):
            cb = by_path[f"{key}_over_b"]
            lines.append(
                f"{size}: ({key})/(b) fps {cb['fps']:.2f}, CPU per frame {cb['cpu_per_frame']:.2f} -> goal "
                f"(two-process shm within 10% of the single-process fps) {'MET' if cb['met'] else 'NOT met'}"
            )
        for path, row in by_path.items():
            for error in row.get("errors", []) if isinstance(row, dict) else []:
                lines.append(f"{size} ({path}) failed: {error}")
    return "\n".join(lines)

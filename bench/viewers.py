"""Benchmark 6: what each viewer costs the real MediaMTX, and what the auth hook costs each join.

Why: MediaMTX fans one stream out to every viewer, and asks framecast's auth hook about each
of them; how many viewers a machine serves, and whether the hook is a join's bottleneck, are
figures only the real server gives (docs/mediamtx.md).

One 640x360@30 stream (capture's test pattern, the encoder's libx264, RTSP) into a real
MediaMTX (tests.support.real_mediamtx: framecast's config, every access through the hook, a
recorder counting the hook's calls). The auth service runs as its own process, so its CPU is
its own. Viewers get tokens from auth over the bus (``TokenRequest(role="viewer")``), then
1, 10 and 50 of them join from child processes (bench.viewer_peers: aiortc WHEP peers, or HTTP
clients following MediaMTX's HLS session flow), at most PEERS_PER_PROCESS per process.

Read from /proc (bench.procs): MediaMTX's CPU seconds per second in a steady window with the
viewers playing, less the same with none, per viewer; during the joins, the auth process's CPU
(less its idle rate) per hook decision, beside MediaMTX's own CPU for the joins. Per-viewer
CPU of the peers themselves is reported so the load on the 2 cores is visible.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import procs, report
from .options import Options

FPS = 30
SIZE = (640, 360)
COUNTS = (1, 10, 50)
QUICK_COUNTS = (1, 10)
KINDS = ("whep", "hls")
PEERS_PER_PROCESS = {"whep": 13, "hls": 25, "mjpeg": 25}  # aiortc peers are heavy: 50 -> 4 processes
WINDOW_S = 10.0
QUICK_WINDOW_S = 3.0
SETTLE_S = 2.0  # after the last join: playlists and jitter buffers reach their steady state


async def _start_auth(nats_url: str, auth_addr: str, key_dir: str) -> Any:
    env = dict(os.environ, FRAMECAST_NATS_URL=nats_url, FRAMECAST_AUTH_ADDR=auth_addr,
               FRAMECAST_AUTH_KEY_DIR=key_dir, FRAMECAST_LOG_LEVEL="warning")
    return await procs.start_service("auth", env, f"http://{auth_addr}/.well-known/jwks.json",
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def _viewers(kind: str, url: str, tokens: list[str]) -> tuple[list[subprocess.Popen[bytes]], dict[str, Any]]:
    """Start the viewer processes, give them their tokens, wait until every viewer joined or failed."""
    per = PEERS_PER_PROCESS[kind]
    groups = [tokens[i:i + per] for i in range(0, len(tokens), per)]
    children = [procs.spawn([sys.executable, "-m", "bench.viewer_peers", kind, url, str(len(g))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=Path(__file__).parent.parent)
                for g in groups]
    for child, group in zip(children, groups, strict=True):
        assert child.stdin is not None
        child.stdin.write("".join(f"{t}\n" for t in group).encode())
        child.stdin.flush()
    joined: dict[str, Any] = {"joined": 0, "failures": [], "join_ms": []}
    for child in children:
        assert child.stdout is not None
        line = await asyncio.to_thread(child.stdout.readline)
        if not line:
            joined["failures"].append(f"a viewer process exited with {child.wait()}")
            continue
        got = json.loads(line)
        joined["joined"] += got["joined"]
        joined["failures"] += got["failures"]
        joined["join_ms"] += got["join_ms"]
    return children, joined


def _mark(children: list[subprocess.Popen[bytes]]) -> dict[str, int]:
    """Frames (WebRTC) or segments (HLS) and bytes the viewers have received so far, all processes."""
    received = {"units": 0, "bytes": 0, "missed": 0}
    for child in children:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(b"mark\n")
        child.stdin.flush()
        for key, value in json.loads(child.stdout.readline()).items():
            received[key] += value
    return received


def _stop_viewers(children: list[subprocess.Popen[bytes]]) -> dict[str, Any]:
    stopped: dict[str, Any] = {"failed_later": 0, "failed_later_why": []}
    for child in children:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.close()
        line = child.stdout.readline()
        if line:
            last = json.loads(line)
            stopped["failed_later"] += last["failed_later"]
            stopped["failed_later_why"] += last["failed_later_why"]
        procs.stop(child)
    return stopped


@dataclass
class Live:
    """One stream of capture's test pattern, published by the encoder into a real MediaMTX."""

    nats_url: str
    server: Any
    """tests.support.real_mediamtx.RealMediaMTX (its hook recorder as ``server.recorder``)."""
    auth: subprocess.Popen[bytes]
    bus: Any
    stream_id: str
    urls: dict[str, str]

    async def viewer_tokens(self, count: int) -> list[str]:
        from framecast.proto import subjects
        from framecast.proto.messages import TokenIssued, TokenRequest

        return [(await self.bus.request(subjects.AUTH_TOKEN_ISSUE, TokenRequest(
            role="viewer", stream_id=self.stream_id), TokenIssued, service="auth", timeout=10)).token
            for _ in range(count)]


@asynccontextmanager
async def live_stream(size: tuple[int, int] = SIZE, label: str = "viewers") -> AsyncIterator[Live]:
    """auth (own process), a real MediaMTX asking it about everything, encoder and capture in this
    process; yields once the stream is published."""
    from framecast.capture.service import lifespan as capture_lifespan
    from framecast.capture.settings import CaptureSettings
    from framecast.devstack.nats import NatsServer
    from framecast.encoder.service import lifespan as encoder_lifespan
    from framecast.encoder.settings import EncoderSettings
    from framecast.proto import subjects
    from framecast.proto.bus import Bus
    from framecast.proto.messages import Accepted, StartStream, TestPatternSource, VideoFormat
    from framecast.proto.states import StreamState
    from framecast.proto.store import StateStore
    from tests.support.real_mediamtx import real_mediamtx
    from tests.support.rtsp import free_port
    from tests.support.services import running, wait_for_state

    stream_id = f"bench-{label}-{secrets.token_hex(3)}"
    auth_addr = f"127.0.0.1:{free_port()}"
    async with AsyncExitStack() as stack:
        nats = await NatsServer().start()
        stack.push_async_callback(nats.stop)
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"framecast-bench-{label}-")))
        auth = await _start_auth(nats.url, auth_addr, str(tmp / "keys"))
        stack.callback(procs.stop, auth)
        server = await stack.enter_async_context(real_mediamtx(tmp, auth_addr, record=True))
        assert server.process is not None and server.recorder is not None
        quiet = {"nats_url": nats.url, "log_level": "warning"}
        await stack.enter_async_context(running("encoder", EncoderSettings(
            **quiet, mediamtx_rtsp=server.rtsp, mediamtx_api=server.api, encoder="libx264"), encoder_lifespan))
        await stack.enter_async_context(running("capture", CaptureSettings(**quiet), capture_lifespan))
        bus = await Bus.connect(nats.url, client_id=f"bench-{label}")
        stack.push_async_callback(bus.close)
        await bus.request(subjects.STREAM_START, StartStream(
            stream_id=stream_id, source=TestPatternSource(), format=VideoFormat(width=size[0], height=size[1], fps=FPS),
        ), Accepted, service="capture", timeout=10)
        await wait_for_state(await StateStore.open(bus, "bench"), stream_id, StreamState.PUBLISHING, timeout=30)
        await asyncio.sleep(SETTLE_S)
        yield Live(nats.url, server, auth, bus, stream_id,
                   {"whep": f"{server.whep}/{stream_id}/whep", "hls": f"{server.hls}/{stream_id}/index.m3u8"})


async def measure(options: Options) -> dict[str, Any]:
    window_s = QUICK_WINDOW_S if options.quick else WINDOW_S
    counts = QUICK_COUNTS if options.quick else COUNTS
    rows: list[dict[str, Any]] = []
    async with live_stream() as live:
        server, auth, urls = live.server, live.auth, live.urls
        pids = {"mediamtx": [server.process.pid], "auth": [auth.pid]}
        idle = procs.CpuMeter(pids)
        idle.start()
        await asyncio.sleep(window_s)
        idle.stop()
        base = {name: used / idle.wall for name, used in idle.used.items()}
        options.progress(f"viewers: none, MediaMTX {base['mediamtx']:.3f} CPU-s/s, auth {base['auth']:.4f}")
        rows.append({"kind": "none", "viewers": 0, "mediamtx_cpu_per_s": base["mediamtx"],
                     "auth_cpu_per_s": base["auth"], "machine_busy": idle.machine_busy})
        for kind in KINDS:
            for count in counts:
                tokens = await live.viewer_tokens(count)
                calls = len(server.recorder.calls)
                join = procs.CpuMeter(pids)
                join.start()
                children, joined = await _viewers(kind, urls[kind], tokens)
                join.stop()
                decisions = len(server.recorder.calls) - calls
                allowed = sum(1 for s in server.recorder.statuses[calls:] if s == 200)
                await asyncio.sleep(SETTLE_S)
                steady = procs.CpuMeter({**pids, "viewers": [c.pid for c in children]})
                first = await asyncio.to_thread(_mark, children)
                steady.start()
                await asyncio.sleep(window_s)
                steady.stop()
                last = await asyncio.to_thread(_mark, children)
                decisions_steady = len(server.recorder.calls) - calls - decisions
                stopped = await asyncio.to_thread(_stop_viewers, children)
                mtx = steady.used["mediamtx"] / steady.wall
                auth_join = max(join.used["auth"] - base["auth"] * join.wall, 0.0)
                mtx_join = max(join.used["mediamtx"] - base["mediamtx"] * join.wall, 0.0)
                row = {
                    "kind": kind, "viewers": count, "joined": joined["joined"], "failures": joined["failures"],
                    "join_p50_ms": report.median(joined["join_ms"]),
                    "join_max_ms": max(joined["join_ms"], default=float("nan")),
                    "join_wall_s": join.wall, "mediamtx_cpu_per_s": mtx,
                    "mediamtx_cpu_per_viewer": (mtx - base["mediamtx"]) / max(joined["joined"], 1),
                    "viewer_procs_cpu_per_s": steady.used["viewers"] / steady.wall,
                    "machine_busy": steady.machine_busy,
                    "hook_decisions_join": decisions, "hook_allowed_join": allowed,
                    "hook_decisions_steady": decisions_steady,
                    "auth_cpu_ms_per_decision": auth_join * 1000 / decisions if decisions else float("nan"),
                    "mediamtx_join_cpu_ms_per_viewer": mtx_join * 1000 / max(joined["joined"], 1),
                    "received_per_viewer_per_s": (last["units"] - first["units"]) / max(joined["joined"], 1)
                    / steady.wall,
                    "received_kbit_s_per_viewer": (last["bytes"] - first["bytes"]) * 8 / 1000
                    / max(joined["joined"], 1) / steady.wall,
                    "hls_segments_missed": last["missed"] - first["missed"],
                    **stopped,
                }
                auth_total = row["auth_cpu_ms_per_decision"] * decisions
                row["auth_share_of_join_cpu"] = auth_total / (auth_total + mtx_join * 1000) \
                    if decisions and not math.isnan(auth_total) and auth_total + mtx_join > 0 else float("nan")
                rows.append(row)
                options.progress(
                    f"viewers: {count} {kind}: {joined['joined']} joined (p50 {row['join_p50_ms']:.0f} ms), "
                    f"MediaMTX {mtx:.3f} CPU-s/s ({row['mediamtx_cpu_per_viewer'] * 100:.2f} % of a core per "
                    f"viewer), {decisions} hook calls, auth {row['auth_cpu_ms_per_decision']:.2f} ms CPU each, "
                    f"peers {row['viewer_procs_cpu_per_s']:.2f} CPU-s/s, machine {steady.machine_busy:.0%} busy, "
                    f"{row['received_kbit_s_per_viewer']:.0f} kbit/s per viewer"
                    + (f"; failures: {joined['failures'][:2]}" if joined["failures"] else "")
                    + (f"; {stopped['failed_later']} stopped later: {stopped['failed_later_why']}"
                       if stopped["failed_later"] else ""))
                await asyncio.sleep(1.0)  # MediaMTX closes the sessions that left
    return {"rows": rows, "window_s": window_s, "stream": f"{SIZE[0]}x{SIZE[1]}@{FPS}"}


def _skip_reason() -> str | None:
    from tests.support.real_mediamtx import BINARY

    if BINARY is None:
        return "no mediamtx binary (PATH, FRAMECAST_MEDIAMTX_BIN or `framecast mediamtx install`)"
    try:
        import aiortc  # noqa: F401
    except ImportError:
        return "aiortc is not installed"
    return None


def run(options: Options) -> dict[str, Any]:
    skipped = _skip_reason()
    if skipped is not None:
        return {"group": "viewers", "skipped": skipped, "results": [], "table": f"viewers skipped: {skipped}"}
    began = time.time()
    measured = asyncio.run(measure(options))
    rows = []
    for r in measured["rows"]:
        if r["kind"] == "none":
            rows.append(["none", 0, "-", "-", "-", r["mediamtx_cpu_per_s"], "-", "-", "-", "-", "-", "-",
                         r["machine_busy"]])
            continue
        rows.append([
            "WebRTC" if r["kind"] == "whep" else "HLS", r["viewers"], f"{r['joined']}/{r['failed_later']}",
            r["join_p50_ms"], r["received_kbit_s_per_viewer"],
            r["mediamtx_cpu_per_s"], r["mediamtx_cpu_per_viewer"] * 100, r["mediamtx_join_cpu_ms_per_viewer"],
            f"{r['hook_decisions_join']}/{r['hook_decisions_steady']}", r["auth_cpu_ms_per_decision"],
            r["auth_share_of_join_cpu"] * 100, r["viewer_procs_cpu_per_s"], r["machine_busy"],
        ])
    text = report.table(
        ["viewers by", "viewers", "joined/stopped", "join p50 ms", "kbit/s each", "MediaMTX CPU-s/s", "% core / viewer",
         "MediaMTX join CPU ms", "hook calls join/steady", "auth CPU ms / call", "auth % of join CPU",
         "peers CPU-s/s", "machine busy"],
        rows, title=f"viewers of one {measured['stream']} stream through the real MediaMTX "
                    f"({measured['window_s']:.0f} s windows)",
    )
    text += ("\n(% core / viewer: MediaMTX's CPU with the viewers playing, less with none, per viewer; join: "
             "from the first viewer's request to the last viewer's first media, CPU less the idle rate; stopped: "
             "viewers that failed after joining; kbit/s each: received in the window; auth: "
             "its own process, CPU during the joins per hook call; WebRTC peers count frames, they do not "
             "decode; HLS clients poll every 0.5 s, start 3 segments behind the newest and fetch every segment after it; machine busy: all CPUs, anyone)")
    for r in measured["rows"]:
        if r.get("failures"):
            text += f"\n{r['kind']} x{r['viewers']}: {len(r['failures'])} failed to join, e.g. {r['failures'][0]}"
        if r.get("hls_segments_missed"):
            text += f"\n{r['kind']} x{r['viewers']}: {r['hls_segments_missed']} segments gone before fetched (404)"
        if r.get("failed_later"):
            text += f"\n{r['kind']} x{r['viewers']}: {r['failed_later']} stopped while playing: {r['failed_later_why']}"
    return {"group": "viewers", "settings": {"window_s": measured["window_s"], "stream": measured["stream"],
                                             "peers_per_process": PEERS_PER_PROCESS, "started": began},
            "results": measured["rows"], "table": text}

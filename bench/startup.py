"""Benchmark: start-up, from a stream requested to its first picture decoded by a viewer.

The spike took 1,685 ms from a stream's start to MediaMTX's first HLS manifest; issue 18's goal
is 500 ms to the first decodable frame at the receiver. Everything is real here: the SDK opens
the stream (the request: ``framecast.capture.open``, sending the stamped test pattern at
30 fps), the encoder service (already running, libx264, its publish token from auth) claims
it, and the real MediaMTX serves it. The viewer is FFmpeg reading the path by RTSP with a viewer
token, started the moment the path exists: the encoder gives each stream its own path entry
(``alwaysAvailable``) before FFmpeg starts, so a viewer can attach while FFmpeg is still
starting, watching MediaMTX's dark offline picture until the stream's first keyframe. The
first picture is the first decoded frame as bright as the test pattern (the offline picture's
mean grey is about 5, the pattern's about 120).

Figures per run, from the request: the path entry there, the record saying ``publishing``
(FFmpeg's progress report, up to 0.2 s late), and the first picture at the viewer. The viewer's
own start (process, RTSP handshake) runs in parallel with FFmpeg's, as a player's would. Runs
are repeated, each with a new stream; the medians are reported. Skipped without a MediaMTX
binary.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import report
from .options import Options

SIZES = ((640, 360), (1280, 720))
FPS = 30
REPEAT = 5
VIEWER_SIZE = (160, 90)
"""The viewer scales what it decodes to this (the offline picture is 1920x1080): a brightness is all it needs."""
PATTERN_BRIGHTER_THAN = 60
VIEWER_FLAGS = ("-fflags", "nobuffer", "-flags", "low_delay", "-probesize", "32", "-analyzeduration", "0")
"""A player's habits: decode what arrives at once, no probing ahead, no output queue."""


async def measure_one(nats_url: str, server: Any, bus: Any, size: tuple[int, int]) -> dict[str, float]:
    import framecast.capture
    from framecast.frames.pattern import TestPattern
    from framecast.proto import subjects
    from framecast.proto.messages import TokenIssued, TokenRequest
    from framecast.proto.states import StreamState
    from framecast.proto.store import StateStore
    from framecast.runtime.ffmpeg import find_ffmpeg
    from framecast.runtime.mediamtx_api import MediaMTXClient, PathNotFound

    width, height = size
    stream_id = f"bench-start-{width}-{secrets.token_hex(3)}"
    viewer = await bus.request(subjects.AUTH_TOKEN_ISSUE, TokenRequest(role="viewer", stream_id=stream_id),
                               TokenIssued, service="auth", timeout=10)
    service = await bus.request(subjects.AUTH_TOKEN_ISSUE, TokenRequest(role="service"), TokenIssued,
                                service="auth", timeout=10)
    store = await StateStore.open(bus, "bench")
    marks: dict[str, float] = {}
    pattern = TestPattern(width, height)

    async def note_publishing() -> None:
        async for _, record in store.watch(stream_id):
            if record is not None and record.state is StreamState.PUBLISHING:
                marks["publishing"] = time.monotonic()
                return

    async def view() -> None:
        async with MediaMTXClient(server.api, lambda: service.token) as api:
            while True:
                with contextlib.suppress(PathNotFound):
                    await api.get_path(stream_id)
                    break
                await asyncio.sleep(0.005)  # polling the API: MediaMTX announces nothing
        marks["path"] = time.monotonic()
        w, h = VIEWER_SIZE
        reader = await asyncio.create_subprocess_exec(
            find_ffmpeg(), "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp", *VIEWER_FLAGS,
            "-i", f"{server.rtsp}/{stream_id}?token={viewer.token}", "-vf", f"scale={w}:{h}",
            "-f", "rawvideo", "-pix_fmt", "gray", "-", stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        assert reader.stdout is not None
        try:
            while "picture" not in marks:
                picture = await reader.stdout.readexactly(w * h)
                if np.frombuffer(picture, np.uint8).mean() > PATTERN_BRIGHTER_THAN:
                    marks["picture"] = time.monotonic()
        finally:
            reader.kill()
            await reader.wait()

    watching = asyncio.create_task(note_publishing())
    requested = time.monotonic()
    viewing = asyncio.create_task(view())
    try:
        async with framecast.capture.open(stream_id, width=width, height=height, fps=FPS, nats_url=nats_url) as stream:
            n = 0
            start = time.monotonic()
            while not viewing.done():
                n += 1
                await asyncio.sleep(max(0.0, start + (n - 1) / FPS - time.monotonic()))
                await stream.send(pattern.render(n, time.time_ns() // 1_000_000))
                if time.monotonic() - start > 20:
                    raise TimeoutError("no picture within 20 s")
            await viewing
            with contextlib.suppress(TimeoutError):  # the record may say so after the picture is seen
                await asyncio.wait_for(asyncio.shield(watching), 5)
    finally:
        for task in (watching, viewing):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return {name: (at - requested) * 1000 for name, at in marks.items()}


async def _run_all(options: Options) -> dict[str, Any]:
    from framecast.auth import AuthSettings
    from framecast.auth import lifespan as auth_lifespan
    from framecast.devstack.nats import NatsServer
    from framecast.encoder.service import lifespan as encoder_lifespan
    from framecast.encoder.settings import EncoderSettings
    from framecast.proto.bus import Bus
    from tests.support.real_mediamtx import real_mediamtx
    from tests.support.rtsp import free_port
    from tests.support.services import running

    repeat = options.repeat or (1 if options.quick else REPEAT)
    sizes = SIZES[:1] if options.quick else SIZES
    runs: dict[str, list[dict[str, float]]] = {f"{w}x{h}": [] for w, h in sizes}
    nats = await NatsServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="framecast-bench-startup-") as tmp:
            auth_addr = f"127.0.0.1:{free_port()}"
            quiet = {"nats_url": nats.url, "log_level": "warning"}
            async with (
                real_mediamtx(Path(tmp), auth_addr) as server,
                running("auth", AuthSettings(**quiet, auth_addr=auth_addr, auth_key_dir=str(Path(tmp) / "keys"),
                                             mediamtx_api=server.api), auth_lifespan),
                running("encoder", EncoderSettings(**quiet, mediamtx_rtsp=server.rtsp, mediamtx_api=server.api,
                                                   encoder="libx264"), encoder_lifespan),
            ):
                bus = await Bus.connect(nats.url, client_id="bench-startup")
                try:
                    for _ in range(repeat):  # sizes interleaved
                        for size in sizes:
                            got = await measure_one(nats.url, server, bus, size)
                            runs[f"{size[0]}x{size[1]}"].append(got)
                            options.progress(f"startup {size[0]}x{size[1]}: path {got.get('path', 0):.0f} ms, "
                                             f"publishing {got.get('publishing', float('nan')):.0f} ms, "
                                             f"first picture {got.get('picture', float('nan')):.0f} ms")
                finally:
                    await bus.close()
    finally:
        await nats.stop()
    return {"runs": runs, "repeat": repeat}


def run(options: Options) -> dict[str, Any]:
    from tests.support.real_mediamtx import BINARY

    if BINARY is None:
        return {"skipped": True, "table": "startup: skipped: no mediamtx binary (PATH, FRAMECAST_MEDIAMTX_BIN or "
                                          "`framecast mediamtx install`)"}
    measured = asyncio.run(_run_all(options))
    rows, results = [], []
    for size, runs in measured["runs"].items():
        figures = {name: report.median([r.get(name, float("nan")) for r in runs])
                   for name in ("path", "publishing", "picture")}
        worst = max((r.get("picture", float("nan")) for r in runs), default=float("nan"))
        results.append({"size": size, "fps": FPS, "runs": runs, **{f"{k}_ms_p50": v for k, v in figures.items()},
                        "picture_ms_max": worst})
        rows.append([size, round(figures["path"]), round(figures["publishing"]), round(figures["picture"]),
                     round(worst), round(figures["picture"] / 500, 2), round(figures["picture"] / 1685, 2)])
    table = report.table(
        ["stream", "path entry ms", "publishing ms", "first picture ms", "worst ms", "÷ goal 500 ms",
         "÷ spike 1,685 ms"], rows,
        title=f"start-up through the real MediaMTX, from the SDK's open (medians of {measured['repeat']} runs; "
              "first picture: decoded by an RTSP viewer waiting on the path)",
    )
    return {"table": table, "rows": results, "settings": {"sizes": SIZES, "fps": FPS, "repeat": measured["repeat"]}}

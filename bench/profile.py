"""``python -m bench.profile``: the per-frame path under a sampling profiler, as a flame graph.

Runs one of the transport group's two-process paths - (c2) by default: a producer process
writing the shared-memory ring, flow-controlled, and the real Pump writing each frame into
FFmpeg's stdin in this process; ``--transport nats`` for (d), frames over NATS - under py-spy,
and writes an SVG flame graph of this process and the producer (``--subprocesses``). The
pictures in docs/performance.md come from it.

    .venv/bin/python -m bench.profile --out docs/flame-pump.svg
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys

from framecast.proto.messages import VideoFormat

from .transport import run_pumped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/flame-pump.svg", help="where the SVG goes")
    parser.add_argument("--size", default="640x360", help="WIDTHxHEIGHT of the frames")
    parser.add_argument("--frames", type=int, default=20000, help="frames through the pump")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--transport", choices=["shm-credit", "nats"], default="shm-credit",
                        help="shm-credit: row (c2); nats: row (d)")
    parser.add_argument("--format", choices=["flamegraph", "raw"], default="flamegraph",
                        help="raw: collapsed stacks, for counting where samples fall")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)  # the profiled run itself
    args = parser.parse_args(argv)
    width, height = (int(n) for n in args.size.split("x"))
    fmt = VideoFormat(width=width, height=height, fps=30)
    if args.inner:
        run = asyncio.run(run_pumped(fmt, args.frames, 200, args.transport))
        print(f"{run.fps:.0f} frames/s, {run.cpu_ms_per_frame:.2f} CPU-ms per frame", file=sys.stderr)
        return 0
    py_spy = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or shutil.which("py-spy")
    if py_spy is None:
        print("python -m bench.profile: py-spy is not installed (make install brings it)", file=sys.stderr)
        return 2
    command = [py_spy, "record", "--subprocesses", "--rate", str(args.rate), "--format", args.format,
               "--output", args.out, "--", sys.executable, "-m", "bench.profile", "--inner",
               "--size", args.size, "--frames", str(args.frames), "--transport", args.transport]
    return subprocess.run(command, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())

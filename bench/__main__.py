"""``python -m bench``: run the benchmark groups and print their tables."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

from . import report
from .options import Options

GROUPS = ("transport", "latency", "startup", "capacity", "glass", "viewers", "gop", "mjpeg", "soak")
LONG = ("soak",)
"""Groups left out of a run that names none: they take a quarter of an hour on their own."""
DEFAULT_GROUPS = tuple(g for g in GROUPS if g not in LONG)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="framecast benchmarks: figures and ratios, printed and written to bench/results/<group>.json",
    )
    parser.add_argument("groups", nargs="*", metavar="group",
                        help=f"one or more of {', '.join(GROUPS)} (default: all but {', '.join(LONG)}, in that "
                             f"order; soak, about 15 minutes, runs only when named)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of about a minute: few frames, one repetition")
    parser.add_argument("--frames", type=int, default=0, metavar="N",
                        help="frames measured per transport row, per latency size, per capacity stream")
    parser.add_argument("--repeat", type=int, default=0, metavar="R",
                        help="runs of each transport row, the median reported (default 5; 1 with --quick)")
    parser.add_argument("--minutes", type=float, default=0.0, metavar="M",
                        help="soak: minutes the 4 streams run (default 10; 1 with --quick)")
    parser.add_argument("--cycles", type=int, default=0, metavar="N",
                        help="soak: start/stop cycles of the churn part (default 50; 10 with --quick)")
    parser.add_argument("--results", type=Path, default=None, metavar="DIR",
                        help="where <group>.json is written (default: bench/results, the committed record; "
                             "a --quick run writes nothing unless this is given)")
    parser.add_argument("--no-save", action="store_true", help="print only; write no JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    if args.frames < 0 or args.repeat < 0 or args.minutes < 0 or args.cycles < 0:
        parser.error("--frames, --repeat, --minutes and --cycles must be positive")
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group {', '.join(unknown)}; choose from {', '.join(GROUPS)}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    # transport (e) gets its reader cut by the server on purpose; it counts the cuts
    logging.getLogger("nats.aio.client").setLevel(logging.CRITICAL)
    # SIGTERM unwinds like Ctrl-C, so every benchmark's clean-up (children, rings) runs
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results_dir = args.results or (None if args.quick else report.RESULTS_DIR)
    options = Options(quick=args.quick, frames=args.frames, repeat=args.repeat, minutes=args.minutes,
                      cycles=args.cycles,
                      results_dir=None if args.no_save else results_dir, verbose=not args.quiet)
    from framecast.frames import sweep_stale

    sweep_stale()  # rings left by an earlier run that was killed
    env = report.environment()
    print(f"environment: {report.describe(env)}", flush=True)
    try:
        for group in args.groups or DEFAULT_GROUPS:
            began = time.monotonic()
            module = importlib.import_module(f"bench.{group}")
            result = module.run(options)
            result["environment"] = env
            result["elapsed_s"] = time.monotonic() - began
            result["quick"] = options.quick
            result["load_average_after"] = os.getloadavg()
            print(f"\n{result['table']}\n", flush=True)
            # a group skipped here (no browser, no MediaMTX) leaves the recorded figures alone
            path = None if result.get("skipped") else report.save(group, result, options.results_dir)
            if path is not None:
                print(f"({group}: {result['elapsed_s']:.0f} s; written to {path})", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted; children stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``framecast`` command: one umbrella, one subcommand per installed distribution.

Each distribution registers its subcommands through the ``framecast.commands`` entry-point
group, so a host with only the encoder installed gets only ``framecast encoder``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from importlib.metadata import entry_points

from framecast.proto.errors import FramecastError

Subparsers = "argparse._SubParsersAction[argparse.ArgumentParser]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="framecast",
        description="framecast: server-side video to browsers over NATS, FFmpeg and MediaMTX.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for entry in sorted(entry_points(group="framecast.commands"), key=lambda e: e.name):
        entry.load()(commands)
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except FramecastError as exc:  # the user's to act on: one line, no traceback
        print(f"framecast {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def service_main(service: str) -> int:
    """``python -m framecast.<service>``: exactly ``framecast <service> [ARGS]``, so ``--help``
    prints the service's help (its settings too) and exits instead of starting it."""
    return main([service, *sys.argv[1:]])

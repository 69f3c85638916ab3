"""``framecast up`` (the dev stack) and ``framecast mediamtx`` (find or install MediaMTX)."""

from __future__ import annotations

import argparse
import asyncio
import sys

from . import mediamtx
from .stack import up


def register_up(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("up", help="run the whole dev stack with a test-pattern stream")
    parser.add_argument("--stream", default="cam1", help="id of the test-pattern stream (default cam1)")
    parser.set_defaults(run=lambda args: asyncio.run(up(args.stream)))


def register_mediamtx(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = commands.add_parser("mediamtx", help="find or install the MediaMTX media server")
    sub = parser.add_subparsers(dest="mediamtx_command", required=True, metavar="COMMAND")
    install = sub.add_parser("install", help=f"download MediaMTX {mediamtx.VERSION} (checksum-verified) into the cache")
    install.set_defaults(run=_install)
    where = sub.add_parser("where", help="print the MediaMTX binary the dev stack would use")
    where.set_defaults(run=_where)


def _install(_args: argparse.Namespace) -> int:
    try:
        path = mediamtx.install(progress=mediamtx.ProgressBar(sys.stdout, f"MediaMTX {mediamtx.VERSION}"))
    except mediamtx.MediaMTXInstallError as exc:
        print(f"framecast mediamtx install: {exc}", file=sys.stderr)
        return 1
    print(f"installed MediaMTX {mediamtx.VERSION} at {path}")
    return 0


def _where(_args: argparse.Namespace) -> int:
    found = mediamtx.find_mediamtx()
    if found is None:
        print(f"MediaMTX not found; run: {mediamtx.INSTALL_HINT}", file=sys.stderr)
        return 1
    print(found)
    return 0

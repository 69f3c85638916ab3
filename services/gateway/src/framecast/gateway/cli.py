"""``framecast gateway``: run the gateway service (HTTP API, live events, player page)."""

from __future__ import annotations

import argparse

from framecast.runtime.lifecycle import run, settings_help

from .service import lifespan
from .settings import GatewaySettings


def main() -> int:
    return run("gateway", GatewaySettings, lifespan)


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    gateway = commands.add_parser(
        "gateway",
        help="run the gateway (stream API, live events, playback tokens, player page)",
        epilog=settings_help(GatewaySettings),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gateway.set_defaults(run=lambda _args: main())

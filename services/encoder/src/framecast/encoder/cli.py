"""``framecast encoder``: run the encoder service."""

from __future__ import annotations

import argparse

from framecast.runtime.lifecycle import run, settings_help

from .service import lifespan
from .settings import EncoderSettings


def main() -> int:
    return run("encoder", EncoderSettings, lifespan)


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    encoder = commands.add_parser(
        "encoder", help="run the encoder service (FFmpeg -> RTSP -> MediaMTX)",
        epilog=settings_help(EncoderSettings), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    encoder.set_defaults(run=lambda _args: main())

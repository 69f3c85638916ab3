"""``framecast encoder``: run the encoder service; ``framecast encoder drain``: empty one."""

from __future__ import annotations

import argparse
import asyncio
import sys

from nats.aio.msg import Msg

from framecast.proto import subjects
from framecast.proto.errors import NoResponders
from framecast.proto.messages import DrainEncoder, Draining, EncoderHeartbeat
from framecast.runtime.lifecycle import run, settings_help
from framecast.runtime.stream_commands import connect, run_async

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
    sub = encoder.add_subparsers(dest="encoder_command", metavar="COMMAND")
    drain = sub.add_parser("drain", help="empty one encoder: its streams move to others, it takes no new one")
    drain.add_argument("encoder_id", help="the encoder's instance id (FRAMECAST_INSTANCE_ID; `stream list` shows it)")
    drain.add_argument("--timeout", type=float, default=60.0, help="seconds to wait until it is empty")
    drain.set_defaults(run=lambda a: run_async(_drain(a)))


async def _drain(args: argparse.Namespace) -> int:
    bus = await connect()
    try:
        empty = asyncio.Event()
        left: list[str] = []

        async def on_heartbeat(beat: EncoderHeartbeat, _msg: Msg) -> None:
            left[:] = beat.streams
            if beat.draining and not beat.streams:
                empty.set()

        await bus.subscribe(subjects.encoder_heartbeat(args.encoder_id), EncoderHeartbeat, on_heartbeat)
        try:
            answer = await bus.request(subjects.encoder_drain(args.encoder_id), DrainEncoder(), Draining,
                                       service="encoder", timeout=5)
        except NoResponders:
            print(f"framecast encoder drain: no encoder {args.encoder_id} is running", file=sys.stderr)
            return 1
        print(f"draining {answer.encoder_id}: it takes no new stream; handing over "
              f"{len(answer.streams)} stream(s){': ' + ', '.join(answer.streams) if answer.streams else ''}",
              flush=True)
        try:
            await asyncio.wait_for(empty.wait(), args.timeout)
        except TimeoutError:
            print(f"framecast encoder drain: {args.encoder_id} still has {', '.join(left) or 'streams'} after "
                  f"{args.timeout:g} s (no other encoder took them?)", file=sys.stderr)
            return 1
        print(f"{args.encoder_id} is empty; stop it when you like (it takes no new stream until restarted)")
        return 0
    finally:
        await bus.close()

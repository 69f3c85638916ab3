"""``framecast capture``: the capture service, or one stream produced from the command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from framecast.frames import FrameFormatError
from framecast.proto.bus import Bus
from framecast.proto.errors import FramecastError
from framecast.proto.messages import SOURCE_INPUTS, VideoFormat, source_for
from framecast.runtime.lifecycle import report, run, settings_help
from framecast.runtime.settings import CommonSettings, load
from framecast.runtime.stream_commands import parse_size, stream_id_arg

from .producer import Producer, StreamClosed
from .service import lifespan
from .settings import CaptureSettings
from .sources import PipeFrames, SourceError, open_source, run_source


def main() -> int:
    return run("capture", CaptureSettings, lifespan)


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    capture = commands.add_parser(
        "capture", help="run the capture service, or produce one stream from a source",
        description="Without a source: run the capture service. With one: produce that stream now.",
        epilog=settings_help(CaptureSettings), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    capture.set_defaults(run=lambda _args: main())
    sources = capture.add_subparsers(dest="source", metavar="SOURCE")
    for name, helptext in (
        ("stdin", "raw frames on standard input (e.g. mycv | framecast capture stdin --stream cam1)"),
        ("testpattern", "moving test pattern with timestamp blocks"),
        ("file", "a video file, looped in real time"),
        ("url", "an RTSP or HTTP camera"),
        ("device", "a V4L2 device"),
    ):
        p = sources.add_parser(name, help=helptext)
        p.add_argument("--stream", required=True, type=stream_id_arg, help="stream id (the MediaMTX path)")
        p.add_argument("--size", type=parse_size, default=(640, 360), help="WIDTHxHEIGHT (default 640x360)")
        p.add_argument("--fps", type=int, default=30)
        p.add_argument("--pix-fmt", default="bgr24", choices=["bgr24", "rgb24", "gray", "yuv420p"])
        p.add_argument("--transport", default="auto", choices=["auto", "shm", "nats"],
                       help="auto: shared memory with an encoder on this host, else NATS (default)")
        if SOURCE_INPUTS.get(name):
            p.add_argument("input", help=SOURCE_INPUTS[name])
        if name == "file":
            p.add_argument("--once", action="store_true", help="play once instead of looping")
        p.set_defaults(run=lambda args: _produce(args))


def _produce(args: argparse.Namespace) -> int:
    try:
        settings = load(CommonSettings)
        width, height = args.size
        fmt = VideoFormat(width=width, height=height, fps=args.fps, pix_fmt=args.pix_fmt)
        return asyncio.run(_produce_async(args, settings.nats_url, fmt))
    except FramecastError as exc:
        return report("capture", exc)
    except (FrameFormatError, StreamClosed) as exc:
        print(f"framecast capture: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def _produce_async(args: argparse.Namespace, nats_url: str, fmt: VideoFormat) -> int:
    source = None if args.source == "stdin" else source_for(
        args.source, getattr(args, "input", None), loop=not getattr(args, "once", False)
    )
    frames = PipeFrames(sys.stdin.buffer, fmt, "stdin") if source is None else open_source(source, fmt)
    bus = await Bus.connect(nats_url, client_id=f"capture-{args.stream}-{os.getpid()}")
    producer = Producer(bus, args.stream, fmt, transport=args.transport, source=source)
    try:
        await producer.start()
        try:
            await run_source(producer, frames, paced=True)
        except SourceError as exc:
            await producer.close(str(exc), failed=True)
            raise
        except StreamClosed:
            pass
        await producer.close(producer.stop_reason("source ended"))
        return 0
    finally:
        await bus.close()

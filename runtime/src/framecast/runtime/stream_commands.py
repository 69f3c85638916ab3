"""``framecast stream``: start, stop, list and watch streams, as an operator, over NATS."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Callable

from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.errors import CorruptRecord, FramecastError
from framecast.proto.ids import InvalidStreamId, check_stream_id
from framecast.proto.messages import (
    SOURCE_INPUTS,
    Accepted,
    StartStream,
    StopStream,
    StreamRecord,
    StreamTransition,
    VideoFormat,
    source_for,
)
from framecast.proto.states import TERMINAL, StreamState
from framecast.proto.store import StateStore, set_replicas

from .lifecycle import report
from .settings import CommonSettings, load


def parse_size(text: str) -> tuple[int, int]:
    """``WIDTHxHEIGHT`` as an argparse type."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, e.g. 640x360, got {text!r}") from None
    return width, height


def stream_id_arg(text: str) -> str:
    """A stream id as an argparse type."""
    try:
        return check_stream_id(text)
    except InvalidStreamId as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class EventPrinter:
    """Prints lifecycle events a line each, and a failure that is being retried once, not at
    every retry (an encoder waiting for MediaMTX retries every few seconds for as long as it
    takes): a retry carries the failure alone in ``cause``. ``out`` receives each line."""

    def __init__(self, out: Callable[[str], None] = print, *, indent: str = "") -> None:
        self._out = out
        self._indent = indent
        self._printed: dict[str, str] = {}  # stream -> the failure last printed

    def __call__(self, event: StreamTransition | StreamRecord) -> None:
        stream_id, state, reason = event.stream_id, event.state, event.reason
        at = event.at if isinstance(event, StreamTransition) else event.updated_at
        failure = event.cause or reason
        retrying = state in (StreamState.STARTING, StreamState.STALLED)
        if retrying and failure and self._printed.get(stream_id) == failure:
            return
        self._printed[stream_id] = failure
        stamp = time.strftime("%H:%M:%S", time.localtime(at))
        self._out(f"{self._indent}{stamp} {stream_id}: {state}" + (f" ({reason})" if reason else ""))


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    stream = commands.add_parser("stream", help="start, stop and watch streams (talks to NATS)")
    sub = stream.add_subparsers(dest="stream_command", required=True, metavar="COMMAND")

    start = sub.add_parser("start", help="start a stream from a capture source")
    start.add_argument("stream_id", type=stream_id_arg)
    start.add_argument("--source", choices=list(SOURCE_INPUTS), default="testpattern")
    start.add_argument("--input", help="file path, camera URL or device path for those sources")
    start.add_argument("--size", type=parse_size, default=(640, 360), help="WIDTHxHEIGHT (default 640x360)")
    start.add_argument("--fps", type=int, default=30)
    start.add_argument("--transport", choices=["auto", "shm", "nats"], default="auto",
                       help="auto: shared memory with an encoder on the capture's host, else NATS (default)")
    start.add_argument("--no-wait", action="store_true", help="return once the request is accepted")
    start.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for publishing")
    start.set_defaults(run=lambda a: run_async(_start(a)))

    stop = sub.add_parser("stop", help="stop a stream")
    stop.add_argument("stream_id", type=stream_id_arg)
    stop.add_argument("--no-wait", action="store_true", help="return once the request is accepted")
    stop.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for stopped")
    stop.set_defaults(run=lambda a: run_async(_stop(a)))

    listing = sub.add_parser("list", help="every stream and its state")
    listing.set_defaults(run=lambda a: run_async(_list(a)))

    watch = sub.add_parser("watch", help="print lifecycle events (history first, then live)")
    watch.add_argument("stream_id", nargs="?")
    watch.set_defaults(run=lambda a: run_async(_watch(a)))

    repair = sub.add_parser("repair", help="mark a stream whose record cannot be read as failed")
    repair.add_argument("stream_id", type=stream_id_arg)
    repair.set_defaults(run=lambda a: run_async(_repair(a)))

    delete = sub.add_parser("delete", help="forget a stream's record (stop it first)")
    delete.add_argument("stream_id", type=stream_id_arg)
    delete.set_defaults(run=lambda a: run_async(_delete(a)))

    replicas = sub.add_parser("replicas", help="keep N copies of every stream's state, history and revocations "
                              "in JetStream (3 once NATS is a cluster)")
    replicas.add_argument("count", type=int, choices=(1, 3, 5))
    replicas.set_defaults(run=lambda a: run_async(_replicas(a)))


def run_async(coro: object) -> int:
    """Run one command; a FramecastError is one line and its exit code (2: a bad setting)."""
    try:
        return asyncio.run(coro)  # type: ignore[arg-type]
    except FramecastError as exc:
        return report("", exc)


async def connect() -> Bus:
    """The bus as an operator's command sees it (FRAMECAST_NATS_URL)."""
    settings = load(CommonSettings)
    return await Bus.connect(settings.nats_url, client_id="framecast-cli", connect_timeout=3)


def _print(line: str) -> None:
    print(line, flush=True)


async def _start(args: argparse.Namespace) -> int:
    if args.source != "testpattern" and not args.input:
        print(f"framecast: --source {args.source} needs --input", file=sys.stderr)
        return 2
    source = source_for(args.source, args.input)
    width, height = args.size
    request = StartStream(
        stream_id=args.stream_id,
        source=source,
        format=VideoFormat(width=width, height=height, fps=args.fps),
        transport=args.transport,
    )
    bus = await connect()
    try:
        store = await StateStore.open(bus, "framecast-cli")
        async with contextlib.aclosing(store.history(args.stream_id, after=await _last_seq(bus))) as events:
            reply = await bus.request(subjects.STREAM_START, request, Accepted, service="capture", timeout=10)
            printer = EventPrinter(_print)
            printer(reply.stream)
            if args.no_wait:
                return 0
            return await _wait_for(args.stream_id, events, reply.stream.state,
                                   {StreamState.PUBLISHING, StreamState.LIVE}, args.timeout, printer)
    finally:
        await bus.close()


async def _last_seq(bus: Bus) -> int:
    info = await bus.js.stream_info(subjects.EVENTS_STREAM)
    return info.state.last_seq


async def _wait_for(  # type: ignore[no-untyped-def]
    stream_id: str, events, printed: StreamState, goal: set[StreamState], timeout: float, printer: EventPrinter
) -> int:
    """Print ``stream_id``'s events until one reaches ``goal`` (0) or ends the stream (1).
    ``printed`` is the state the command's reply already showed: its event is not repeated."""
    last = None

    async def follow() -> int:
        nonlocal last
        repeated = printed
        async for _, event in events:
            if event.state is repeated:
                repeated = None
                continue
            last = event
            printer(event)
            if event.state in goal:
                return 0
            if event.state in TERMINAL:
                return 1
        return 1

    try:
        return await asyncio.wait_for(follow(), timeout)
    except TimeoutError:
        now = f" (it is {last.state}: {last.reason})" if last is not None and last.reason else ""
        print(f"framecast: {stream_id} is not {' or '.join(sorted(goal))} after {timeout:g} s{now}. "
              f"It goes on in the background: `framecast stream watch {stream_id}` follows it.",
              file=sys.stderr)
        return 1


async def _stop(args: argparse.Namespace) -> int:
    bus = await connect()
    try:
        store = await StateStore.open(bus, "framecast-cli")
        async with contextlib.aclosing(store.history(args.stream_id, after=await _last_seq(bus))) as events:
            reply = await bus.request(
                subjects.STREAM_STOP, StopStream(stream_id=args.stream_id), Accepted, service="capture", timeout=10
            )
            printer = EventPrinter(_print)
            printer(reply.stream)
            if args.no_wait or reply.stream.state in TERMINAL:
                return 0
            return await _wait_for(args.stream_id, events, reply.stream.state, {StreamState.STOPPED},
                                   args.timeout, printer)
    finally:
        await bus.close()


async def _list(args: argparse.Namespace) -> int:
    bus = await connect()
    try:
        records = await (await StateStore.open(bus, "framecast-cli")).list()
        if not records:
            print("no streams")
        for r in records:
            fmt = f"{r.format.width}x{r.format.height}@{r.format.fps}" if r.format else "-"
            print(f"{r.stream_id:<20} {r.state:<11} {fmt:<14} {r.encoder_kind or '-':<10} {r.reason}")
            if r.placement:
                print(f"{'':<20} placed: {r.placement}")
            if r.mediamtx_node:
                print(f"{'':<20} on MediaMTX node {r.mediamtx_node}")
        return 0
    finally:
        await bus.close()


async def _watch(args: argparse.Namespace) -> int:
    bus = await connect()
    try:
        store = await StateStore.open(bus, "framecast-cli")
        printer = EventPrinter(_print)
        async with contextlib.aclosing(store.history(args.stream_id)) as events:
            async for _, event in events:
                printer(event)
        return 0
    finally:
        await bus.close()


async def _repair(args: argparse.Namespace) -> int:
    bus = await connect()
    try:
        record = await (await StateStore.open(bus, "framecast-cli")).repair(args.stream_id)
    finally:
        await bus.close()
    if record is None:
        print(f"framecast: no stream {args.stream_id}", file=sys.stderr)
        return 1
    print(f"{args.stream_id}: {record.state}" + (f" ({record.reason})" if record.reason else ""))
    return 0


async def _delete(args: argparse.Namespace) -> int:
    bus = await connect()
    try:
        store = await StateStore.open(bus, "framecast-cli")
        try:
            record = await store.get(args.stream_id)
        except CorruptRecord:
            record = None  # unreadable: nothing can be running it
        if record is not None and record.state not in TERMINAL:
            print(f"framecast: {args.stream_id} is {record.state}; `framecast stream stop {args.stream_id}` first",
                  file=sys.stderr)
            return 1
        if not await store.delete(args.stream_id):
            print(f"framecast: no stream {args.stream_id}", file=sys.stderr)
            return 1
    finally:
        await bus.close()
    print(f"{args.stream_id}: deleted")
    return 0


async def _replicas(args: argparse.Namespace) -> int:
    bus = await connect()
    try:
        await StateStore.open(bus, "framecast-cli")  # the streams exist before they are moved
        moved = await set_replicas(bus, args.count)
    finally:
        await bus.close()
    for name, count in moved.items():
        print(f"{name}: {count} replica{'s' if count > 1 else ''}")
    return 0

"""The producing process of the two-process benchmarks: ``python -m bench.producer MODE ...``.

- ``shm``: a :class:`RingWriter` (what the SDK's ``send`` calls) writing frames as fast as it can,
  or (``--credit-sem``) one frame per frame the reader took;
- ``nats``: a :class:`NatsFrameWriter` publishing frames as fast as it can, or (``--credit-subject``)
  as fast as the reader takes them, at most ``--window`` frames ahead of the count of frames
  it says it received;
- ``sdk``: ``--streams`` streams opened with ``framecast.capture.open``, each sent test-pattern
  frames at ``--fps`` (a frame that is late is skipped, the way a camera drops it);
- ``ffmpeg``: what a script around FFmpeg does instead: ``--streams`` FFmpeg processes, each
  started with framecast's own libx264 command and publishing to ``--url``/``<prefix><i>``, fed
  the same frames at the same rate with ``stdin.write(frame.tobytes())`` from one loop.

Talks to the benchmark over stdin/stdout, one JSON object per line: it prints ``{"ready": ...}``
once set up, starts on a ``go`` line, answers ``mark`` with the frames sent so far and the
monotonic time (``sdk``), and stops on end of input, a ``stop`` line or SIGTERM, printing
``{"sent": ...}`` last. Frames are test-pattern frames rendered before the clock starts (``shm``,
``nats``: 8 distinct frames in turn) or as they are sent (``sdk``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Callable

import numpy as np

from framecast.frames.pattern import TestPattern
from framecast.proto.messages import VideoFormat

DISTINCT_FRAMES = 8


def _say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def frames(fmt: VideoFormat, count: int = DISTINCT_FRAMES) -> list[np.ndarray]:
    """``count`` different test-pattern frames, rendered once."""
    pattern = TestPattern(fmt.width, fmt.height, fmt.pix_fmt)
    return [pattern.render(n, 1_700_000_000_000 + n).copy() for n in range(1, count + 1)]


class _Control:
    """Lines from stdin: ``go`` sets ``started``; ``stop``, end of input or SIGTERM set ``stopped``."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.on_mark: Callable[[], object] | None = None
        signal.signal(signal.SIGTERM, lambda *_: self._stop())
        threading.Thread(target=self._read, daemon=True).start()

    def _stop(self) -> None:
        self.started.set()
        self.stopped.set()

    def _read(self) -> None:
        for line in sys.stdin:
            command = line.strip()
            if command == "go":
                self.started.set()
            elif command == "mark" and self.on_mark is not None:
                self.on_mark()
            elif command == "stop":
                break
        self._stop()


def run_shm(fmt: VideoFormat, credit_sem: str) -> None:
    """Write frames as fast as possible; with ``credit_sem``, only when the reader has posted
    that semaphore (once per frame it took), so no frame is made only to be dropped."""
    import posix_ipc

    from framecast.frames import RingWriter

    images = frames(fmt)
    control = _Control()
    credits = posix_ipc.Semaphore(credit_sem) if credit_sem else None
    with RingWriter.create(f"bench-{secrets.token_hex(3)}", fmt) as writer:
        _say(ready=writer.name, pid=os.getpid())
        control.started.wait()
        stopped = control.stopped.is_set
        n = 0
        while not stopped():
            if credits is not None:
                try:
                    credits.acquire(0.1)
                except posix_ipc.BusyError:
                    continue
            writer.send(images[n % DISTINCT_FRAMES])
            n += 1
        _say(sent=n)
    if credits is not None:
        credits.close()


async def run_nats(fmt: VideoFormat, url: str, subject: str, credit_subject: str, window: int) -> None:
    """Publish frames as fast as possible; with ``credit_subject``, at most ``window`` frames
    beyond the count of frames the reader says it received (NATS itself has no back-pressure
    from a subscriber to a publisher)."""
    import nats

    from framecast.frames import NatsFrameWriter

    images = frames(fmt)
    control = _Control()
    nc = await nats.connect(url, name=f"bench-producer-{os.getpid()}", max_reconnect_attempts=0)
    received = 0
    credit = asyncio.Event()

    async def on_credit(msg: object) -> None:
        nonlocal received
        received = max(received, int(msg.data))  # type: ignore[attr-defined]
        credit.set()

    try:
        if credit_subject:
            await nc.subscribe(credit_subject, cb=on_credit)
            await nc.flush()
        writer = NatsFrameWriter(nc, subject, fmt, paced=False)  # the harness paces it
        _say(ready=subject, pid=os.getpid(), max_payload=nc.max_payload)
        await asyncio.get_running_loop().run_in_executor(None, control.started.wait)
        stopped = control.stopped.is_set
        n = 0
        while not stopped():
            while credit_subject and n - received >= window and not stopped():
                credit.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(credit.wait(), 0.1)
            await asyncio.to_thread(writer.send, images[n % DISTINCT_FRAMES])
            n += 1
        _say(sent=n)
    finally:
        await nc.close()


class _Pacer:
    """Ticks at ``fps`` on an absolute schedule; a tick more than a frame late skips the frames
    it missed, the way a camera drops them."""

    def __init__(self, fps: int) -> None:
        self.period = 1 / fps
        self.start = time.monotonic()
        self.tick = 0

    def next(self) -> float:
        """Move to the next tick; the seconds to sleep until it is due."""
        self.tick += 1
        due = self.start + self.tick * self.period
        late = time.monotonic() - due
        if late > self.period:
            self.tick += int(late / self.period)
            due = self.start + self.tick * self.period
        return max(0.0, due - time.monotonic())


async def run_sdk(fmt: VideoFormat, url: str, prefix: str, streams: int) -> None:
    import framecast.capture
    from framecast.capture import StreamClosed

    control = _Control()
    loop = asyncio.get_running_loop()
    ids = [f"{prefix}{i}" for i in range(streams)]
    patterns = [TestPattern(fmt.width, fmt.height, fmt.pix_fmt) for _ in ids]
    sent = [0] * streams
    control.on_mark = lambda: loop.call_soon_threadsafe(
        lambda: _say(t=time.monotonic(), sent=list(sent))
    )
    openers = [
        framecast.capture.open(i, width=fmt.width, height=fmt.height, fps=fmt.fps, pix_fmt=fmt.pix_fmt,
                               nats_url=url)
        for i in ids
    ]
    opened = []
    try:
        for opener in openers:
            opened.append((opener, await opener.__aenter__()))
        _say(ready=ids, pid=os.getpid())
        await loop.run_in_executor(None, control.started.wait)
        pacer = _Pacer(fmt.fps)
        while not control.stopped.is_set():
            for s, (_, stream) in enumerate(opened):
                try:
                    await stream.send(patterns[s].render(pacer.tick + 1, time.time_ns() // 1_000_000))
                except StreamClosed:
                    continue
                sent[s] += 1
            await asyncio.sleep(pacer.next())
        _say(sent=list(sent))
    finally:
        # all at once: each close waits (up to 5 s) for the encoder to confirm the end
        closed = await asyncio.gather(*(opener.__aexit__(None, None, None) for opener, _ in opened),
                                      return_exceptions=True)
        for result in closed:
            if isinstance(result, BaseException):
                print(f"closing a stream failed: {result!r}", file=sys.stderr)


def run_ffmpeg(fmt: VideoFormat, url: str, prefix: str, streams: int) -> None:
    import subprocess

    from framecast.encoder.profiles import build_command
    from framecast.runtime.ffmpeg import find_ffmpeg

    control = _Control()
    ids = [f"{prefix}{i}" for i in range(streams)]
    patterns = [TestPattern(fmt.width, fmt.height, fmt.pix_fmt) for _ in ids]
    sent = [0] * streams
    control.on_mark = lambda: _say(t=time.monotonic(), sent=list(sent))
    ffmpeg = find_ffmpeg()
    encoders = [subprocess.Popen(build_command(ffmpeg, "libx264", fmt, f"{url.rstrip('/')}/{i}"),  # noqa: S603
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                for i in ids]
    try:
        _say(ready=ids, pid=os.getpid())
        control.started.wait()
        pacer = _Pacer(fmt.fps)
        while not control.stopped.is_set():
            for s, encoder in enumerate(encoders):
                assert encoder.stdin is not None
                try:
                    encoder.stdin.write(patterns[s].render(pacer.tick + 1, time.time_ns() // 1_000_000).tobytes())
                except BrokenPipeError:
                    continue
                sent[s] += 1
            time.sleep(pacer.next())
        _say(sent=list(sent))
    finally:
        for encoder in encoders:
            with contextlib.suppress(BrokenPipeError):
                encoder.stdin.close()  # type: ignore[union-attr]
        for encoder in encoders:
            try:
                encoder.wait(5)
            except subprocess.TimeoutExpired:
                encoder.kill()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.producer")
    parser.add_argument("mode", choices=("shm", "nats", "sdk", "ffmpeg"))
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--height", type=int, required=True)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--url", default="")
    parser.add_argument("--subject", default="")
    parser.add_argument("--prefix", default="bench")
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--credit-subject", default="", help="nats: flow control by the reader's count")
    parser.add_argument("--credit-sem", default="", help="shm: a POSIX semaphore the reader posts per frame")
    parser.add_argument("--window", type=int, default=4, help="nats: frames in flight with --credit-subject")
    args = parser.parse_args(argv)
    fmt = VideoFormat(width=args.width, height=args.height, fps=args.fps, pix_fmt="bgr24")
    if args.mode == "shm":
        run_shm(fmt, args.credit_sem)
    elif args.mode == "nats":
        asyncio.run(run_nats(fmt, args.url, args.subject, args.credit_subject, args.window))
    elif args.mode == "ffmpeg":
        run_ffmpeg(fmt, args.url, args.prefix, args.streams)
    else:
        asyncio.run(run_sdk(fmt, args.url, args.prefix, args.streams))


if __name__ == "__main__":
    main()

"""Frame sources of the capture service: a test pattern, raw frames on stdin, and anything
FFmpeg can decode (files, RTSP/HTTP cameras, V4L2 devices).

Every source is paced in real time on the monotonic clock at the stream's fps (a file or a
fast pipe never runs ahead; a late frame is sent at once, never in a burst to catch up) and
reads each frame into one reused buffer, so the only per-frame copy is the transport's own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import time
from typing import BinaryIO, Protocol

import numpy as np

from framecast.frames.pattern import TestPattern
from framecast.proto.errors import FramecastError
from framecast.proto.messages import AnySource, DeviceSource, FileSource, TestPatternSource, UrlSource, VideoFormat
from framecast.runtime.ffmpeg import find_ffmpeg, scrub
from framecast.runtime.procs import die_with_parent, stop_process

from .producer import Producer

log = logging.getLogger("framecast.capture")


STOP_GRACE_S = 2.0
"""After SIGTERM, how long a decoding FFmpeg gets before SIGKILL."""


class SourceError(FramecastError):
    """A source that cannot deliver frames (bad input, missing file, short frame)."""


class FrameSource(Protocol):
    def read_into(self, frame: np.ndarray) -> bool:
        """Fill ``frame`` with the next frame (blocking); False at the end of the source."""

    async def close(self) -> None:
        """Release the source (stop its FFmpeg); safe to call twice."""


class TestPatternFrames:
    """Moving content with the frame number and the wall-clock ms stamped in pixel blocks."""

    def __init__(self, fmt: VideoFormat) -> None:
        self._pattern = TestPattern(fmt.width, fmt.height, fmt.pix_fmt)
        self._frame_no = 0

    def read_into(self, frame: np.ndarray) -> bool:
        self._frame_no += 1
        ms = time.time_ns() // 1_000_000
        np.copyto(frame, self._pattern.render(self._frame_no, ms))
        return True

    async def close(self) -> None:
        pass


class PipeFrames:
    """Raw frames of exactly the stream's format from a byte pipe (stdin, FFmpeg's stdout)."""

    def __init__(self, pipe: BinaryIO, fmt: VideoFormat, what: str) -> None:
        self._pipe = pipe
        self._size = fmt.frame_size
        self._what = what
        self._count = 0

    def read_into(self, frame: np.ndarray) -> bool:
        view = memoryview(frame).cast("B")
        got = 0
        while got < self._size:
            n = self._pipe.readinto(view[got:])
            if not n:
                break
            got += n
        if got == 0:
            return False
        if got < self._size:
            raise SourceError(
                f"{self._what} ended in the middle of frame {self._count + 1}: got {got} of "
                f"{self._size} bytes; check --size and --pix-fmt"
            )
        self._count += 1
        return True

    async def close(self) -> None:
        pass


class FFmpegFrames(PipeFrames):
    """Frames decoded by an FFmpeg child process, scaled to the stream's format."""

    def __init__(self, ffmpeg: str, input_args: list[str], fmt: VideoFormat, what: str) -> None:
        args = [
            ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", *input_args,
            "-an", "-vf", f"scale={fmt.width}:{fmt.height},fps={fmt.fps}",
            "-f", "rawvideo", "-pix_fmt", fmt.pix_fmt, "pipe:1",
        ]
        self._process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=die_with_parent(), start_new_session=True,
        )
        assert self._process.stdout is not None
        super().__init__(self._process.stdout, fmt, what)

    def read_into(self, frame: np.ndarray) -> bool:
        more = super().read_into(frame)
        if not more and self._process.wait() != 0:
            assert self._process.stderr is not None
            detail = self._process.stderr.read().decode(errors="replace").strip().splitlines()
            raise SourceError(f"{self._what}: FFmpeg failed: {scrub(detail[-1]) if detail else 'no output'}")
        return more

    async def close(self) -> None:
        await stop_process(self._process, term_grace_s=STOP_GRACE_S)


def open_source(source: AnySource, fmt: VideoFormat) -> FrameSource:
    """The frame source for a ``StartStream`` request's source description."""
    match source:
        case TestPatternSource():
            try:
                return TestPatternFrames(fmt)
            except ValueError as exc:  # too small to carry the timestamp blocks
                raise SourceError(f"test pattern: {exc}") from None
        case FileSource(path=path, loop=loop):
            if not os.path.isfile(path):
                raise SourceError(f"file source: {path} does not exist or is not a file")
            looping = ["-stream_loop", "-1"] if loop else []
            return FFmpegFrames(find_ffmpeg(), [*looping, "-re", "-i", path], fmt, f"file {path}")
        case UrlSource(url=url):
            transport = ["-rtsp_transport", "tcp"] if url.startswith("rtsp") else []
            return FFmpegFrames(find_ffmpeg(), [*transport, "-i", url], fmt, "camera URL")
        case DeviceSource(device=device):
            args = ["-f", "v4l2", "-framerate", str(fmt.fps), "-video_size", f"{fmt.width}x{fmt.height}", "-i", device]
            return FFmpegFrames(find_ffmpeg(), args, fmt, f"device {device}")
    raise SourceError(f"frames of a {type(source).__name__} are pushed by the SDK, not read by capture")


async def run_source(producer: Producer, frames: FrameSource, *, paced: bool = True) -> None:
    """Feed ``frames`` into ``producer`` in real time until the source ends or a stop arrives."""
    fmt = producer.format
    buffer = np.empty(fmt.shape, np.uint8)
    interval = 1.0 / fmt.fps
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    last_ns = 0

    def read_and_send() -> bool:
        nonlocal last_ns
        if not frames.read_into(buffer):
            return False
        last_ns = max(last_ns + 1, time.time_ns())  # monotonic even if the wall clock steps back
        producer.send(buffer, last_ns)
        return True

    try:
        while not producer.stop_requested.is_set():
            if paced:
                delay = next_at - loop.time()
                if delay > 0:
                    try:
                        await asyncio.wait_for(producer.stop_requested.wait(), delay)
                        break
                    except TimeoutError:
                        pass
                next_at = max(next_at + interval, loop.time() - interval)
            if not await asyncio.to_thread(read_and_send):
                log.info("source of %s ended", producer.stream_id, extra={"stream_id": producer.stream_id})
                return
    finally:
        await frames.close()

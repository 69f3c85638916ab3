"""Fixtures for the encoder tests: real FFmpeg, an in-memory frame reader, counter frames."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from framecast.encoder.pump import Pump
from framecast.encoder.supervisor import Supervisor, SupervisorPolicy
from framecast.proto.messages import VideoFormat
from framecast.runtime.ffmpeg import find_ffmpeg
from tests.support.rtsp import RtspReceiver

FORMAT = VideoFormat(width=320, height=240, fps=30, pix_fmt="bgr24")
FAST_POLICY = SupervisorPolicy(
    backoff_base_s=0.05,
    backoff_cap_s=0.3,
    stall_timeout_s=2.0,
    start_timeout_s=8.0,
    stop_grace_s=2.0,
    term_grace_s=1.0,
)
TOKEN = "s3cr3t-T0KEN"


# ----- frames carrying a counter --------------------------------------------------------------


class Counter:
    """A 16-bit frame number drawn as 2 rows of 8 black/white blocks at the top of the frame."""

    BITS = 16

    def __init__(self, width: int, height: int) -> None:
        self.block = min(width // 8, height // 4)

    def draw(self, frame: np.ndarray, number: int) -> None:
        """Draw ``number`` into a bgr24 ``frame`` in place (the rest is mid grey)."""
        b = self.block
        frame[2 * b :] = 128
        for bit in range(self.BITS):
            row, col = divmod(bit, 8)
            value = 255 if (number >> bit) & 1 else 0
            frame[row * b : (row + 1) * b, col * b : (col + 1) * b] = value

    def read(self, gray: np.ndarray) -> int:
        """The number in a decoded gray frame."""
        b, m = self.block, self.block // 4
        number = 0
        for bit in range(self.BITS):
            row, col = divmod(bit, 8)
            patch = gray[row * b + m : (row + 1) * b - m, col * b + m : (col + 1) * b - m]
            if patch.mean() > 128:
                number |= 1 << bit
        return number


# ----- an in-memory latest-wins FrameReader --------------------------------------------------


class FakeReader:
    """A FrameReader over three buffers: one being read, the latest, one being filled."""

    def __init__(self, fmt: VideoFormat) -> None:
        self._buffers = [np.zeros(fmt.shape, np.uint8) for _ in range(3)]
        self._cond = threading.Condition()
        self._latest: int | None = None
        self._latest_seq = 0
        self._taken_seq = 0
        self._held: int | None = None
        self.frames = 0
        self.dropped = 0
        self.closed = False
        self.alive = True

    def push(self, image: np.ndarray) -> None:
        with self._cond:
            free = next(i for i in range(3) if i not in (self._held, self._latest))
        np.copyto(self._buffers[free], image)
        with self._cond:
            if self._latest is not None and self._latest_seq > self._taken_seq:
                self.dropped += 1
            self._latest = free
            self._latest_seq += 1
            self.frames += 1
            self._cond.notify_all()

    def wait_frame(self, timeout: float) -> memoryview | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._latest_seq > self._taken_seq, timeout):
                return None
            return self._take()

    def last_frame(self) -> memoryview | None:
        with self._cond:
            return None if self._latest is None else self._take()

    def _take(self) -> memoryview:
        assert self._latest is not None
        self._held = self._latest
        self._taken_seq = self._latest_seq
        return memoryview(self._buffers[self._held])

    def release(self) -> None:
        with self._cond:
            self._held = None

    def producer_alive(self) -> bool:
        return self.alive


class Producer:
    """A thread pushing counter frames into a FakeReader at ``rate`` frames per second."""

    def __init__(self, reader: FakeReader, fmt: VideoFormat, rate: float) -> None:
        self.reader = reader
        self.rate = rate
        self.counter = Counter(fmt.width, fmt.height)
        self.sent = 0
        self._frame = np.zeros(fmt.shape, np.uint8)
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._thread = threading.Thread(target=self._run, name="fake-producer", daemon=True)

    def start(self) -> Producer:
        self._thread.start()
        return self

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()
        self._thread.join(5)

    def _run(self) -> None:
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while not self._stop.is_set():
            if not self._running.is_set():
                self._running.wait()
                next_at = time.monotonic()
                continue
            self.counter.draw(self._frame, self.sent)
            self.reader.push(self._frame)
            self.sent += 1
            next_at += period
            self._stop.wait(max(0.0, next_at - time.monotonic()))  # pacing a fake camera


# ----- collecting events -------------------------------------------------------------------


class Events:
    """An on_event callback that keeps every event and lets a test wait for one."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._cond = asyncio.Condition()

    async def __call__(self, event: Any) -> None:
        async with self._cond:
            self.items.append(event)
            self._cond.notify_all()

    def kinds(self) -> list[str]:
        return [e.kind for e in self.items]

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.items if e.kind == kind]

    async def wait_for(self, kind: str, count: int = 1, timeout: float = 10.0) -> Any:
        """The ``count``-th event of ``kind``, waiting up to ``timeout`` for it."""
        async with self._cond:
            try:
                await asyncio.wait_for(
                    self._cond.wait_for(lambda: len(self.of(kind)) >= count), timeout
                )
            except TimeoutError:
                raise AssertionError(
                    f"no {count}x {kind!r} within {timeout:g} s; events: {self.kinds()}"
                ) from None
            return self.of(kind)[count - 1]


# ----- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def ffmpeg_exe() -> str:
    return find_ffmpeg()


@pytest.fixture
def fmt() -> VideoFormat:
    return FORMAT


@pytest.fixture
def counter(fmt: VideoFormat) -> Counter:
    return Counter(fmt.width, fmt.height)


@pytest.fixture
def reader(fmt: VideoFormat) -> FakeReader:
    return FakeReader(fmt)


@pytest.fixture
def producer(reader: FakeReader, fmt: VideoFormat) -> Iterator[Callable[..., Producer]]:
    made: list[Producer] = []

    def make(rate: float | None = None) -> Producer:
        p = Producer(reader, fmt, rate or fmt.fps).start()
        made.append(p)
        return p

    yield make
    for p in made:
        p.stop()


@pytest.fixture
async def receiver(fmt: VideoFormat, tmp_path: Path) -> AsyncIterator[RtspReceiver]:
    rx = RtspReceiver(width=fmt.width, height=fmt.height, path="cam1", record_dir=tmp_path)
    await rx.start()
    yield rx
    await rx.stop()


def url_with_token(
    url: str, ready: Callable[[], Awaitable[None]] | None = None
) -> Callable[[str], Awaitable[str]]:
    """A url_factory handing out the URL with a fresh token each call (counted in .calls);
    with ``ready``, only once it returns (a receiver listening again, as MediaMTX always is)."""

    async def factory(_why: str) -> str:
        if ready is not None:
            await ready()
        factory.calls += 1  # type: ignore[attr-defined]
        return f"{url}?token={TOKEN}-{factory.calls}"  # type: ignore[attr-defined]

    factory.calls = 0  # type: ignore[attr-defined]
    return factory


@pytest.fixture
def token_url() -> Callable[[str], Callable[[str], Awaitable[str]]]:
    return url_with_token


@pytest.fixture
async def stream(
    ffmpeg_exe: str, fmt: VideoFormat, reader: FakeReader
) -> AsyncIterator[Callable[..., Awaitable[tuple[Supervisor, Pump, Events]]]]:
    """A factory wiring reader -> Pump -> Supervisor; everything is stopped at teardown."""
    made: list[tuple[Supervisor, Pump]] = []

    async def make(
        url_factory: Callable[[str], Awaitable[str]],
        *,
        encoder: str = "libx264",
        policy: SupervisorPolicy = FAST_POLICY,
        heartbeat_s: float = 1.0,
        ffmpeg: str | None = None,
    ) -> tuple[Supervisor, Pump, Events]:
        events = Events()
        pump = Pump(reader, fmt.fps, heartbeat_s=heartbeat_s)
        supervisor = Supervisor(
            ffmpeg=ffmpeg or ffmpeg_exe,
            encoder=encoder,
            fmt=fmt,
            url_factory=url_factory,
            on_event=events,
            on_process=pump.attach,
            policy=policy,
        )
        made.append((supervisor, pump))
        pump.start()
        supervisor.start()
        return supervisor, pump, events

    yield make
    for supervisor, pump in made:
        await supervisor.stop()
        await pump.stop()


FAKE_FFMPEG = """#!{python}
# A stand-in FFmpeg: h264_nvenc and h264_qsv are listed (by the real binary) but fail to
# encode, the way they fail on a host without the hardware; all else runs the real FFmpeg.
# FAKE_FFMPEG_HANG makes h264_qsv hang; FAKE_FFMPEG_ECHO_URL makes RTSP publishing fail
# with the URL in the error, as FFmpeg does when it cannot open an output.
import os, sys
real = {real!r}
args = sys.argv[1:]
encoder = args[args.index("-c:v") + 1] if "-c:v" in args else ""
if encoder == "h264_nvenc":
    sys.stderr.write(
        "[h264_nvenc @ 0x5581d2c0] OpenEncodeSessionEx failed: out of memory (10): (no details)\\n"
        "[vost#0:0/h264_nvenc @ 0x5581d100] [enc:h264_nvenc @ 0x5581d000] Error while opening"
        " encoder - maybe incorrect parameters such as bit_rate, rate, width or height.\\n"
    )
    sys.exit(1)
if encoder == "h264_qsv":
    if os.environ.get("FAKE_FFMPEG_HANG"):
        import signal
        signal.pause()
    sys.stderr.write(
        "[h264_qsv @ 0x55e0] Error initializing an internal MFX session: unsupported (-3)\\n"
    )
    sys.exit(1)
if os.environ.get("FAKE_FFMPEG_ECHO_URL") and "rtsp" in args:
    # FFmpeg repeats its output URL in errors: the supervisor must scrub it
    sys.stderr.write(
        "[out#0/rtsp @ 0x55e1] Error opening output " + args[-1]
        + ": Server returned 400 Bad Request\\n"
    )
    sys.exit(1)
os.execv(real, [real, *args])
"""


@pytest.fixture
def fake_ffmpeg(tmp_path: Path, ffmpeg_exe: str) -> str:
    path = tmp_path / "ffmpeg"
    path.write_text(FAKE_FFMPEG.format(python=sys.executable, real=ffmpeg_exe))
    path.chmod(0o755)
    return str(path)


def pid_gone(pid: int) -> bool:
    """No process ``pid`` left, or only its zombie waiting for a reaper that is not ours."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture
def gone() -> Callable[[int], bool]:
    return pid_gone


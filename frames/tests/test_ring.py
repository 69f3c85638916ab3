"""The shared-memory frame ring, with producers and readers in real separate processes."""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Iterator

import numpy as np
import posix_ipc
import pytest

from framecast.frames import FrameFormatError, RingOpenError, RingReader, RingWriter, sweep_stale
from framecast.proto.ids import InvalidStreamId
from framecast.proto.messages import ShmTransport, VideoFormat

FMT = VideoFormat(width=640, height=360)
TIMEOUT = 10.0
_BASE = (np.arange(FMT.frame_size, dtype=np.uint32) % 251).astype(np.uint8).reshape(FMT.shape)

# Children share one frame recipe: frame ``seq`` is a ramp shifted by ``seq``, stamped with
# ``seq`` as its capture timestamp, so content and slot header can be checked together.
_COMMON = f"""
import os, sys, numpy as np, posix_ipc
from framecast.frames.ring import RingReader, RingWriter
from framecast.proto.messages import VideoFormat
FMT = VideoFormat(width={FMT.width}, height={FMT.height})
BASE = (np.arange(FMT.frame_size, dtype=np.uint32) % 251).astype(np.uint8).reshape(FMT.shape)
def frame(seq):
    return BASE + np.uint8(seq % 256)
def say(*words):
    print(*words, flush=True)
"""

PRODUCER = _COMMON + """
writer = RingWriter.create("cam1", FMT)
say("ring", writer.name)
for line in sys.stdin:
    command, *args = line.split()
    if command == "write":
        for _ in range(int(args[0])):
            writer.send(frame(writer.seq + 1), timestamp_ns=writer.seq + 1)
        say("wrote", writer.seq)
    elif command == "close":
        writer.close()
        say("closed")
"""

READER = _COMMON + """
reader = RingReader.open(sys.argv[1])
view = reader.wait_frame(10)
say("held", reader.seq)
sys.stdin.readline()
"""

LOCK_HOLDER = _COMMON + """
lock = posix_ipc.Semaphore(sys.argv[1] + "-lock")
lock.acquire(10)
say("locked")
sys.stdin.readline()
"""


def expected(seq: int) -> np.ndarray:
    return _BASE + np.uint8(seq % 256)


def leftovers(name: str) -> list[str]:
    return [entry for entry in os.listdir("/dev/shm") if name.lstrip("/") in entry]


class Child:
    """A Python child process driven by lines on stdin, answering with lines on stdout."""

    def __init__(self, script: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put("")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def expect(self, word: str) -> list[str]:
        line = self._lines.get(timeout=TIMEOUT)
        assert line, f"child exited with {self.proc.wait(TIMEOUT)} before saying {word!r}"
        said, *args = line.split()
        assert said == word, line
        return args

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(TIMEOUT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.stop()


@pytest.fixture
def writer() -> Iterator[RingWriter]:
    with RingWriter.create("cam1", FMT) as ring:
        yield ring
    assert leftovers(ring.name) == []


@pytest.fixture
def reader(writer: RingWriter) -> Iterator[RingReader]:
    with RingReader.open(writer.name) as ring:
        yield ring


def test_create_names_the_ring_and_its_transport(writer: RingWriter, reader: RingReader) -> None:
    assert writer.name.startswith("/framecast-cam1-") and len(writer.name) == 24
    assert writer.transport == ShmTransport(name=writer.name, slots=4)
    assert reader.format == FMT and reader.slots == 4
    assert sorted(leftovers(writer.name)) == sorted(
        [writer.name[1:], f"sem.{writer.name[1:]}-lock", f"sem.{writer.name[1:]}-ready"]
    )


def test_frames_cross_processes_intact(children: list[Child]) -> None:
    producer = Child(PRODUCER)
    children.append(producer)
    (name,) = producer.expect("ring")
    with RingReader.open(name) as reader:
        assert reader.format == FMT
        for seq in range(1, 31):  # lock-step: every frame arrives
            producer.send("write 1")
            producer.expect("wrote")
            view = reader.wait_frame(TIMEOUT)
            assert view is not None and reader.seq == seq == reader.last_timestamp_ns
            assert np.array_equal(np.frombuffer(view, np.uint8).reshape(FMT.shape), expected(seq))
        assert (reader.frames, reader.dropped) == (30, 0)
        producer.send("write 200")  # a burst: whatever arrives is whole and consistent
        while reader.seq < 230:
            view = reader.wait_frame(TIMEOUT)
            assert view is not None and reader.last_timestamp_ns == reader.seq
            frame = np.frombuffer(view, np.uint8).reshape(FMT.shape)
            assert np.array_equal(frame, expected(reader.seq))
        assert reader.frames + reader.dropped == 230
        assert producer.expect("wrote") == ["230"]
        producer.send("close")
        producer.expect("closed")
        assert reader.wait_frame(TIMEOUT) is None and reader.closed
    assert leftovers(name) == []


def test_latest_frame_wins(writer: RingWriter, reader: RingReader) -> None:
    for seq in (1, 2, 3):
        writer.send(expected(seq), timestamp_ns=seq)
    view = reader.wait_frame(TIMEOUT)
    assert view is not None and reader.seq == 3 and bytes(view) == expected(3).tobytes()
    assert reader.wait_frame(0) is None
    assert (reader.frames, reader.dropped) == (1, 0)


def test_lagging_reader_counts_drops_and_memory_stays_flat(
    writer: RingWriter, reader: RingReader
) -> None:
    frame = expected(0)
    writer.send(frame)
    assert reader.wait_frame(TIMEOUT) is not None
    for _ in range(50):  # warm up
        writer.send(frame)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(500):
            writer.send(frame)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 16 * 1024
    assert posix_ipc.Semaphore(writer.name + "-ready").value <= 1
    assert reader.wait_frame(TIMEOUT) is not None
    assert (reader.seq, reader.frames, reader.dropped) == (551, 2, 549)


def test_held_slot_is_never_overwritten(children: list[Child]) -> None:
    producer = Child(PRODUCER)
    children.append(producer)
    (name,) = producer.expect("ring")
    producer.send("write 1")
    producer.expect("wrote")
    with RingReader.open(name) as reader:
        view = reader.wait_frame(TIMEOUT)
        assert view is not None and reader.seq == 1
        held = bytes(view)
        producer.send("write 400")
        replies: list[list[str]] = []
        answered = threading.Thread(target=lambda: replies.append(producer.expect("wrote")))
        answered.start()
        checks = 0
        while answered.is_alive() or checks == 0:
            assert view == held
            checks += 1
        answered.join()
        assert replies == [["401"]] and view == held
        newest = reader.wait_frame(TIMEOUT)
        assert newest is not None and reader.seq == 401 and bytes(newest) == expected(401).tobytes()
        producer.send("close")
        producer.expect("closed")


def test_last_frame_repeats_until_overwritten(writer: RingWriter, reader: RingReader) -> None:
    assert reader.last_frame() is None
    writer.send(expected(1))
    first = reader.wait_frame(TIMEOUT)
    assert first is not None
    assert reader.wait_frame(0) is None
    assert reader.last_frame() is first and bytes(first) == expected(1).tobytes()
    reader.release()
    writer.send(expected(2))
    assert reader.last_frame() is first and bytes(first) == expected(1).tobytes()
    reader.release()
    for seq in range(3, 7):
        writer.send(expected(seq))
    assert reader.last_frame() is None


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((360, 641, 3), np.uint8),
         "frame has shape (360, 641, 3) and dtype uint8; stream cam1 expects (360, 640, 3) uint8"
         " (640x360 bgr24)"),
        (np.zeros((360, 640, 3), np.float32),
         "frame has shape (360, 640, 3) and dtype float32; stream cam1 expects (360, 640, 3)"
         " uint8 (640x360 bgr24)"),
        (np.zeros((360, 640), np.uint8),
         "frame has shape (360, 640) and dtype uint8; stream cam1 expects (360, 640, 3) uint8"
         " (640x360 bgr24)"),
    ],
)
def test_wrong_frames_are_refused_with_what_was_expected(
    writer: RingWriter, frame: np.ndarray, message: str
) -> None:
    with pytest.raises(FrameFormatError) as caught:
        writer.send(frame)
    assert str(caught.value) == message
    assert caught.value.expected == ((360, 640, 3), "uint8")
    assert caught.value.received == (frame.shape, str(frame.dtype))
    assert writer.seq == 0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 3 slots"):
        RingWriter.create("cam1", FMT, slots=2)
    with pytest.raises(InvalidStreamId, match="'a/b' is not a stream id"):
        RingWriter.create("a/b", FMT)
    with pytest.raises(RingOpenError, match="no such shared-memory segment") as caught:
        RingReader.open("/framecast-nothing-00000000")
    assert caught.value.name == "/framecast-nothing-00000000"


@pytest.mark.parametrize(
    ("size", "reason"), [(4096, "not a framecast ring"), (16, "smaller than a header")]
)
def test_foreign_segment_is_not_opened(size: int, reason: str) -> None:
    name = "/framecast-foreign-00000000"
    shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, size=size)
    shm.close_fd()
    try:
        with pytest.raises(RingOpenError, match=reason):
            RingReader.open(name)
    finally:
        shm.unlink()


def test_reader_sees_the_stream_closed(writer: RingWriter, reader: RingReader) -> None:
    writer.send(expected(1))
    results: list[memoryview | None] = []
    assert reader.wait_frame(TIMEOUT) is not None
    waiting = threading.Thread(target=lambda: results.append(reader.wait_frame(TIMEOUT)))
    waiting.start()
    writer.close()
    waiting.join(TIMEOUT)
    assert results == [None] and reader.closed


def test_frames_before_close_are_still_delivered(writer: RingWriter, reader: RingReader) -> None:
    writer.send(expected(9))
    writer.close()
    view = reader.wait_frame(TIMEOUT)
    assert view is not None and bytes(view) == expected(9).tobytes()
    assert reader.wait_frame(TIMEOUT) is None


def test_killed_producer_is_noticed_and_its_ring_removed(children: list[Child]) -> None:
    producer = Child(PRODUCER)
    children.append(producer)
    (name,) = producer.expect("ring")
    producer.send("write 3")
    producer.expect("wrote")
    reader = RingReader.open(name)
    assert reader.wait_frame(TIMEOUT) is not None and reader.producer_alive()
    producer.kill()
    assert not reader.producer_alive() and not reader.closed
    assert reader.wait_frame(0) is None
    reader.unlink()
    reader.close()
    assert leftovers(name) == []


def test_killed_reader_leaves_the_producer_running(
    writer: RingWriter, children: list[Child]
) -> None:
    writer.send(expected(1), timestamp_ns=1)
    first = Child(READER, writer.name)
    children.append(first)
    assert first.expect("held") == ["1"]
    first.kill()
    for seq in range(2, 52):
        writer.send(expected(seq), timestamp_ns=seq)
    with RingReader.open(writer.name) as second:
        view = second.wait_frame(TIMEOUT)
        assert view is not None and second.seq == 51 and bytes(view) == expected(51).tobytes()
        writer.send(expected(52), timestamp_ns=52)
        assert second.wait_frame(TIMEOUT) is not None and second.seq == 52
        assert second.dropped == 0


def test_peer_killed_inside_the_lock_does_not_deadlock(
    children: list[Child], caplog: pytest.LogCaptureFixture
) -> None:
    with RingWriter.create("cam1", FMT, lock_timeout=0.2) as writer:
        holder = Child(LOCK_HOLDER, writer.name)
        children.append(holder)
        holder.expect("locked")
        holder.kill()
        with caplog.at_level(logging.WARNING, logger="framecast.frames.ring"):
            assert writer.send(expected(1)) == 1
        assert "assuming its holder died" in caplog.text
        assert posix_ipc.Semaphore(writer.name + "-lock").value == 1
        with RingReader.open(writer.name, lock_timeout=0.2) as reader:
            assert reader.wait_frame(TIMEOUT) is not None and reader.seq == 1


def test_sweep_removes_only_rings_of_dead_producers(
    writer: RingWriter, children: list[Child]
) -> None:
    producer = Child(PRODUCER)
    children.append(producer)
    (dead,) = producer.expect("ring")
    producer.kill()
    orphan = posix_ipc.Semaphore("/framecast-orphan-00000000-ready", posix_ipc.O_CREX)
    orphan.close()
    removed = sweep_stale()
    assert {dead, f"{dead}-lock", f"{dead}-ready", "/framecast-orphan-00000000-ready"} <= set(
        removed
    )
    assert leftovers(dead) == [] and leftovers("framecast-orphan-00000000") == []
    assert len(leftovers(writer.name)) == 3
    assert not any(writer.name in name for name in removed)

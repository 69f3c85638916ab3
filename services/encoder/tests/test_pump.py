"""The frame pump: rate limit, newest frame wins, heartbeats, broken pipes, producer events."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import tracemalloc

import numpy as np

from framecast.encoder.pump import PIPE_SIZE, Pump
from framecast.proto.messages import VideoFormat
from tests.support.services import eventually

F_GETPIPE_SZ = 1032


class PipeSink:
    """Reads whole frames from a pipe in a thread, as FFmpeg's rawvideo demuxer does."""

    def __init__(self, fmt: VideoFormat, counter, die_after: int | None = None) -> None:  # type: ignore[no-untyped-def]
        """``die_after``: close the read end after that many frames, as a dying FFmpeg does."""
        self.read_fd, self.write_fd = os.pipe()
        self.die_after = die_after
        self.fmt = fmt
        self.counter = counter
        self.numbers: list[int] = []
        self.eof = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        size = self.fmt.frame_size
        buffer = bytearray(size)
        view = memoryview(buffer)
        while True:
            got = 0
            while got < size:
                n = os.readv(self.read_fd, [view[got:]])
                if n == 0:
                    with self._cond:
                        self.eof = True
                        self._cond.notify_all()
                    return
                got += n
            image = np.frombuffer(buffer, np.uint8).reshape(self.fmt.shape)
            with self._cond:
                self.numbers.append(self.counter.read(image[:, :, 0]))
                self._cond.notify_all()
                if len(self.numbers) == self.die_after:
                    os.close(self.read_fd)
                    return

    async def wait(self, predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
        def block() -> bool:
            with self._cond:
                return self._cond.wait_for(lambda: predicate(self), timeout)

        assert await asyncio.to_thread(block), f"sink: condition not met within {timeout} s"

    def join(self) -> None:
        self._thread.join(5)


async def test_fast_producer_is_rate_limited_and_memory_stays_flat(  # type: ignore[no-untyped-def]
    reader, producer, fmt: VideoFormat, counter
) -> None:
    sink = PipeSink(fmt, counter)
    pump = Pump(reader, fmt.fps)
    pump.start()
    pump.attach(sink.write_fd)
    os.close(sink.write_fd)  # the pump keeps its own copy
    producer(rate=3 * fmt.fps)
    await sink.wait(lambda s: len(s.numbers) >= 10)
    tracemalloc.start()
    written_before = pump.frames_written
    loop = asyncio.get_running_loop()
    started = loop.time()
    await sink.wait(lambda s: len(s.numbers) >= 10 + 2 * fmt.fps)  # two more seconds' worth
    elapsed = loop.time() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    await pump.stop()

    # never faster than the stream's rate, whatever the producer does (how close to the rate it
    # stays on a busy machine is a performance figure: bench/, not a test)
    rate = (pump.frames_written - written_before) / elapsed
    assert rate <= 1.1 * fmt.fps, rate
    # what was not written was skipped and counted, never queued
    assert pump.stats.dropped == reader.dropped and pump.stats.frames_in == reader.frames
    assert reader.frames - reader.dropped <= pump.frames_written + 1
    # a queue would hold ~60 frames of 230 KB by now; the pump holds none
    assert peak < 2 * fmt.frame_size, peak
    # whole frames, in order, none torn: every counter read back is newer than the last
    assert sink.numbers == sorted(sink.numbers) and len(set(sink.numbers)) == len(sink.numbers)
    assert pump.repeated <= 1 and pump.write_errors == 0


async def test_paused_producer_gets_heartbeat_repeats(  # type: ignore[no-untyped-def]
    reader, producer, fmt: VideoFormat, counter
) -> None:
    sink = PipeSink(fmt, counter)
    pump = Pump(reader, fmt.fps, heartbeat_s=0.2)
    pump.start()
    pump.attach(sink.write_fd)
    os.close(sink.write_fd)
    source = producer()
    await sink.wait(lambda s: len(s.numbers) >= 5)
    source.pause()
    await sink.wait(lambda s: len(set(s.numbers[-4:])) == 1)
    last = sink.numbers[-1]
    assert last == source.sent - 1  # the producer's last frame, again and again
    # the pump counts a repeat once its write has returned: the sink may read it first
    await eventually(lambda: pump.repeated >= 3, "three repeats counted", 5)
    source.resume()
    await sink.wait(lambda s: s.numbers[-1] > last)
    await pump.stop()


async def test_broken_pipe_waits_for_the_next_ffmpeg(  # type: ignore[no-untyped-def]
    reader, producer, fmt: VideoFormat, counter
) -> None:
    first = PipeSink(fmt, counter, die_after=3)  # then EPIPE for the pump's next write
    pump = Pump(reader, fmt.fps)
    pump.start()
    pump.attach(first.write_fd)
    os.close(first.write_fd)
    producer()
    first.join()
    await eventually(lambda: pump.write_errors == 1, "EPIPE noticed", 5)
    assert pump.stats.write_errors == 1
    second = PipeSink(fmt, counter)
    pump.attach(second.write_fd)
    os.close(second.write_fd)
    await second.wait(lambda s: len(s.numbers) >= 5)
    assert pump.write_errors == 1
    await pump.stop()
    await second.wait(lambda s: s.eof)  # the pump closed its end of the pipe


async def test_pipe_is_raised_to_one_mebibyte(reader, fmt: VideoFormat, counter) -> None:  # type: ignore[no-untyped-def]
    sink = PipeSink(fmt, counter)
    pump = Pump(reader, fmt.fps)
    pump.start()
    pump.attach(sink.write_fd)
    assert fcntl.fcntl(sink.write_fd, F_GETPIPE_SZ) == PIPE_SIZE
    os.close(sink.write_fd)
    pump.attach(None)  # the supervisor taking the pipe back: EOF for FFmpeg
    await sink.wait(lambda s: s.eof)
    await pump.stop()
    await pump.stop()


async def test_producer_end_and_loss_are_reported(reader, fmt: VideoFormat) -> None:  # type: ignore[no-untyped-def]
    events: asyncio.Queue = asyncio.Queue()

    async def on_event(event) -> None:  # type: ignore[no-untyped-def]
        await events.put(event)

    pump = Pump(reader, fmt.fps, producer_timeout_s=0.3, on_event=on_event)
    pump.start()
    reader.alive = False
    lost = await asyncio.wait_for(events.get(), 5)
    assert lost.kind == "producer_lost" and "0.3 s" in lost.reason
    reader.alive = True
    assert (await asyncio.wait_for(events.get(), 5)).kind == "producer_resumed"
    reader.closed = True
    assert (await asyncio.wait_for(events.get(), 5)).kind == "producer_ended"
    await pump.stop()
    assert events.empty()


async def test_a_failing_reader_is_reported_not_swallowed(  # type: ignore[no-untyped-def]
    reader, fmt: VideoFormat, monkeypatch
) -> None:
    def broken(timeout: float) -> memoryview | None:
        raise OSError("shared memory segment vanished")

    monkeypatch.setattr(reader, "wait_frame", broken)
    events: asyncio.Queue = asyncio.Queue()

    async def on_event(event) -> None:  # type: ignore[no-untyped-def]
        await events.put(event)

    pump = Pump(reader, fmt.fps, on_event=on_event)
    pump.start()
    read_fd, write_fd = os.pipe()
    pump.attach(write_fd)
    lost = await asyncio.wait_for(events.get(), 5)
    assert lost.kind == "producer_lost"
    assert "frame reader failed: OSError: shared memory segment vanished" in lost.reason
    await pump.stop()
    os.close(read_fd)
    os.close(write_fd)

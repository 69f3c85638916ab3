"""Frames over NATS against a real nats-server, read back from a plain thread."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import AsyncIterator

import nats
import numpy as np
import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from framecast.devstack.nats import NatsServer
from framecast.frames import FrameFormatError, FrameTooLargeError, NatsFrameReader, NatsFrameWriter
from framecast.frames.nats import SEQ_HEADER, TIMESTAMP_HEADER
from framecast.proto import subjects
from framecast.proto.bus import settle
from framecast.proto.messages import VideoFormat

FMT = VideoFormat(width=320, height=180)
TIMEOUT = 10.0
_BASE = (np.arange(FMT.frame_size, dtype=np.uint32) % 251).astype(np.uint8).reshape(FMT.shape)


def expected(seq: int) -> np.ndarray:
    return _BASE + np.uint8(seq % 256)


@pytest.fixture(scope="module")
async def small_nats_server() -> AsyncIterator[NatsServer]:
    """A nats-server whose max_payload (64 KiB) is smaller than a 320x180 frame."""
    server = await NatsServer(max_payload=65536).start()
    yield server
    await server.stop()


async def _connect(url: str) -> Client:
    return await nats.connect(url, allow_reconnect=False)


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await _connect(nats_server.url)
    yield client
    await client.close()


@pytest.fixture
async def other_nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A second connection, as a producer on another host would have."""
    client = await _connect(nats_server.url)
    yield client
    await client.close()


@pytest.fixture
def subject(stream_id: str) -> str:
    return subjects.frames(stream_id)


@pytest.fixture
async def reader(nc: Client, subject: str) -> AsyncIterator[NatsFrameReader]:
    frames = NatsFrameReader(nc, subject, FMT)
    await frames.start()
    await settle(nc)  # the subscription is known to the server before anything is sent
    yield frames
    await frames.aclose()


async def send(writer: NatsFrameWriter, frame: np.ndarray, timestamp_ns: int | None = None) -> int:
    """``send`` from a thread outside the event loop, as a producer calls it."""
    return await asyncio.to_thread(writer.send, frame, timestamp_ns)


async def read(reader: NatsFrameReader, timeout: float = TIMEOUT) -> memoryview | None:
    """``wait_frame`` from a thread outside the event loop, as the encoder calls it."""
    return await asyncio.to_thread(reader.wait_frame, timeout)


async def test_frames_cross_connections_intact(
    other_nc: Client, reader: NatsFrameReader, subject: str
) -> None:
    writer = NatsFrameWriter(other_nc, subject, FMT, paced=False)
    for seq in range(1, 21):
        assert await send(writer, expected(seq), timestamp_ns=1000 + seq) == seq
        view = await read(reader)
        assert view is not None and reader.seq == seq and reader.last_timestamp_ns == 1000 + seq
        assert np.array_equal(np.frombuffer(view, np.uint8).reshape(FMT.shape), expected(seq))
    assert (reader.frames, reader.dropped) == (20, 0)
    assert reader.last_frame() == expected(20).tobytes()


async def test_non_contiguous_frames_are_sent(nc: Client, reader: NatsFrameReader) -> None:
    wide = np.ascontiguousarray(np.concatenate([expected(7), expected(8)], axis=1))
    frame = wide[:, : FMT.width]
    assert not frame.flags.c_contiguous
    await send(NatsFrameWriter(nc, reader.subject, FMT), frame)
    view = await read(reader)
    assert view is not None and bytes(view) == expected(7).tobytes()


async def test_lagging_reader_keeps_only_the_latest(
    nc: Client, reader: NatsFrameReader
) -> None:
    writer = NatsFrameWriter(nc, reader.subject, FMT, paced=False)
    await send(writer, expected(1))
    assert await read(reader) is not None and reader.seq == 1
    last_arrived = asyncio.Event()

    async def watch(msg: Msg) -> None:
        if msg.headers and msg.headers[SEQ_HEADER] == "50":
            last_arrived.set()

    # Subscribed after the reader on the same connection, so told of each frame after it.
    watcher = await nc.subscribe(reader.subject, cb=watch)
    await settle(nc)
    for seq in range(2, 51):
        await send(writer, expected(seq))
    await asyncio.wait_for(last_arrived.wait(), TIMEOUT)
    await watcher.unsubscribe()
    while reader.seq < 50:
        view = await read(reader)
        assert view is not None and bytes(view) == expected(reader.seq).tobytes()
    assert (reader.frames, reader.dropped) == (2, 48)
    assert await read(reader, 0) is None


async def test_a_producer_faster_than_the_stream_is_held_to_its_rate(
    nc: Client, reader: NatsFrameReader
) -> None:
    writer = NatsFrameWriter(nc, reader.subject, FMT)  # 30 fps
    for seq in range(1, 31):  # thirty frames at once: only the first one goes out
        assert await send(writer, expected(seq)) == seq
    assert writer.skipped == 29
    await settle(nc)
    view = await read(reader)
    assert view is not None and reader.seq == 1 and await read(reader, 0) is None


async def test_gaps_in_seq_count_as_dropped(nc: Client, reader: NatsFrameReader) -> None:
    for seq in (1, 2, 5):
        headers = {SEQ_HEADER: str(seq), TIMESTAMP_HEADER: str(seq)}
        await nc.publish(reader.subject, expected(seq).tobytes(), headers=headers)
        assert await read(reader) is not None and reader.seq == seq
    assert (reader.frames, reader.dropped) == (3, 2)


async def test_foreign_messages_are_ignored(
    nc: Client, reader: NatsFrameReader, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="framecast.frames.nats"):
        await nc.publish(reader.subject, b"not a frame")
        await nc.publish(reader.subject, b"short", headers={SEQ_HEADER: "1", TIMESTAMP_HEADER: "1"})
        await send(NatsFrameWriter(nc, reader.subject, FMT), expected(3))
        view = await read(reader)
    assert view is not None and bytes(view) == expected(3).tobytes()
    assert reader.frames == 1 and "without valid framecast headers" in caplog.text


async def test_wrong_frames_are_refused(nc: Client) -> None:
    writer = NatsFrameWriter(nc, subjects.frames("cam1"), FMT)
    with pytest.raises(FrameFormatError) as caught:
        await send(writer, np.zeros((180, 320), np.uint8))
    assert str(caught.value) == (
        "frame has shape (180, 320) and dtype uint8; stream cam1 expects (180, 320, 3) uint8"
        " (320x180 bgr24)"
    )
    assert writer.seq == 0


async def test_frames_beyond_max_payload_are_refused(small_nats_server: NatsServer) -> None:
    nc = await _connect(small_nats_server.url)
    try:
        assert nc.max_payload == 65536
        big = NatsFrameWriter(nc, subjects.frames("big"), FMT)
        with pytest.raises(FrameTooLargeError) as caught:
            await send(big, expected(1))
        assert caught.value.max_payload == 65536 and caught.value.size > FMT.frame_size
        assert "use the shm transport" in str(caught.value)
        assert "raise max_payload in the NATS server config" in str(caught.value)

        exact = VideoFormat(width=256, height=256, pix_fmt="gray")  # fits only without headers
        with pytest.raises(FrameTooLargeError):
            await send(NatsFrameWriter(nc, subjects.frames("exact"), exact), np.zeros(exact.shape, np.uint8))

        fits = VideoFormat(width=240, height=240, pix_fmt="gray")
        reader = NatsFrameReader(nc, subjects.frames("fits"), fits)
        await reader.start()
        await settle(nc)
        frame = np.full(fits.shape, 42, np.uint8)
        await send(NatsFrameWriter(nc, subjects.frames("fits"), fits), frame)
        view = await read(reader)
        assert view is not None and bytes(view) == frame.tobytes() and nc.is_connected
        await reader.aclose()
    finally:
        await nc.close()


async def test_liveness_and_closing(nc: Client, reader: NatsFrameReader) -> None:
    assert not reader.producer_alive() and not reader.closed
    assert reader.last_frame() is None and await read(reader, 0) is None
    await send(NatsFrameWriter(nc, reader.subject, FMT), expected(1))
    assert await read(reader) is not None and reader.producer_alive()
    reader.release()
    assert reader.last_frame() == expected(1).tobytes()

    waiting = asyncio.create_task(read(reader))
    reader.mark_closed()
    assert await waiting is None and reader.closed


async def test_close_from_a_thread_unsubscribes(nc: Client, subject: str) -> None:
    reader = NatsFrameReader(nc, subject, FMT)
    await reader.start()
    await asyncio.to_thread(reader.close)
    assert reader.closed
    await send(NatsFrameWriter(nc, subject, FMT), expected(1))
    await settle(nc)
    assert await read(reader, 0) is None and reader.frames == 0
    await reader.aclose()
    reader.close()


async def test_send_says_so_instead_of_hanging_when_the_client_loop_is_stuck(nc: Client, subject: str) -> None:
    """A producer thread must not wait forever on a NATS client whose loop never runs again."""
    writer = NatsFrameWriter(nc, subject, FMT, paced=False)
    writer.publish_timeout_s = 0.2
    outcome: concurrent.futures.Future[int] = concurrent.futures.Future()

    def produce() -> None:
        try:
            outcome.set_result(writer.send(expected(1)))
        except Exception as exc:  # noqa: BLE001 - handed to the test's thread
            outcome.set_exception(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    producer.join(timeout=TIMEOUT)  # blocks this event loop, the client's, on purpose: it is stuck
    assert not producer.is_alive(), "send must give up by itself"
    with pytest.raises(TimeoutError, match="did not take it within 0.2 s"):
        outcome.result()
    assert writer.seq == 0, "the frame was not sent"

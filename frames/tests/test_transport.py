"""One writer and one reader interface over both transports, chosen by name and announcement."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import numpy as np
import pytest
from nats.aio.client import Client

from framecast.devstack.nats import NatsServer
from framecast.frames import FrameFormatError, FrameWriter, RingOpenError, address, open_reader, open_writer
from framecast.proto import subjects
from framecast.proto.bus import settle
from framecast.proto.messages import NatsTransport, ShmTransport, TransportKind, VideoFormat

FMT = VideoFormat(width=64, height=48, fps=240)  # the fastest rate: the NATS writer skips little
TIMEOUT = 10.0


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    client = await nats.connect(nats_server.url, allow_reconnect=False)
    yield client
    await client.close()


def ramp(seq: int) -> np.ndarray:
    return (np.arange(FMT.frame_size, dtype=np.uint32) + seq).astype(np.uint8).reshape(FMT.shape)


async def send(writer: FrameWriter, frame: np.ndarray, timestamp_ns: int | None = None) -> int:
    """``send`` from a thread, as every producer calls it."""
    return await asyncio.to_thread(writer.send, frame, timestamp_ns)


@pytest.mark.parametrize("kind", ["shm", "nats"])
async def test_a_frame_crosses_either_transport_through_one_interface(
    nc: Client, stream_id: str, kind: TransportKind
) -> None:
    writer = open_writer(stream_id, FMT, kind, nc)
    reader = await open_reader(writer.transport, FMT, nc)
    try:
        await settle(nc)  # a NATS reader's subscription is known before anything is sent
        for seq in (1, 2):
            await asyncio.sleep(1 / FMT.fps)  # a producer's pace: the NATS writer skips faster frames
            assert await send(writer, ramp(seq), timestamp_ns=100 + seq) == seq == writer.seq
            view = await asyncio.to_thread(reader.wait_frame, TIMEOUT)
            assert view is not None and bytes(view) == ramp(seq).tobytes()
            reader.release()
        assert (reader.frames, reader.dropped) == (2, 0) and reader.producer_alive()
        with pytest.raises(FrameFormatError, match=f"stream {stream_id} expects"):
            await send(writer, np.zeros((48, 64), np.uint8))
        assert writer.seq == 2
    finally:
        writer.close()
        writer.close()
        await reader.aclose()
        await reader.aclose()
    with pytest.raises(ValueError, match="closed"):
        writer.send(ramp(3))


async def test_the_announcement_names_where_the_frames_are(nc: Client, stream_id: str) -> None:
    ring = open_writer(stream_id, FMT, "shm", nc)
    try:
        assert isinstance(ring.transport, ShmTransport)
        assert address(ring.transport) == ring.transport.name
    finally:
        ring.close()
    over_nats = open_writer(stream_id, FMT, "nats", nc)
    assert over_nats.transport == NatsTransport(subject=subjects.frames(stream_id))
    assert address(over_nats.transport) == subjects.frames(stream_id)


async def test_a_live_producers_ring_is_kept_and_a_closed_one_removed(nc: Client, stream_id: str) -> None:
    writer = open_writer(stream_id, FMT, "shm", nc)
    assert isinstance(writer.transport, ShmTransport)
    reader = await open_reader(writer.transport, FMT, nc)
    reader.discard_if_abandoned()  # the producer is this live process: nothing removed
    await reader.aclose()
    await (await open_reader(writer.transport, FMT, nc)).aclose()
    writer.close()
    with pytest.raises(RingOpenError, match="no such shared-memory segment"):
        await open_reader(writer.transport, FMT, nc)


async def test_nats_send_on_the_clients_loop_is_refused_not_deadlocked(nc: Client, stream_id: str) -> None:
    writer = open_writer(stream_id, FMT, "nats", nc)
    with pytest.raises(RuntimeError, match="from another thread"):
        writer.send(ramp(1))
    assert writer.seq == 0

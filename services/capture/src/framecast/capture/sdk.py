"""The three-line change for a CV worker: open a stream, send numpy frames, close it.

    with framecast.capture.open("cam1", width=640, height=360, fps=30) as stream:
        stream.send(frame)

    async with framecast.capture.open("cam1", width=640, height=360) as stream:
        await stream.send(frame)

In the synchronous form the NATS work runs on a private event-loop thread and ``send`` hands
the frame to the stream's writer in the caller's thread (on the shared-memory transport a plain
copy into the ring); it never waits for the encoder. The asynchronous ``send`` does the same in
a worker thread, so a multi-megabyte copy never blocks the caller's event loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

import msgspec
import numpy as np

from framecast.proto.bus import Bus
from framecast.proto.ids import check_stream_id
from framecast.proto.messages import PixFmt, TransportChoice, VideoFormat

from .producer import Producer

T = TypeVar("T")
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"


class _Options:
    def __init__(self, stream_id: str, fmt: VideoFormat, transport: TransportChoice,
                 nats_url: str, metadata: dict[str, str], connect_timeout: float) -> None:
        self.stream_id = stream_id
        self.format = fmt
        self.transport = transport
        self.nats_url = nats_url
        self.metadata = metadata
        self.connect_timeout = connect_timeout

    async def start(self) -> tuple[Bus, Producer]:
        bus = await Bus.connect(
            self.nats_url, client_id=f"sdk-{self.stream_id}-{os.getpid()}", connect_timeout=self.connect_timeout
        )
        producer = Producer(bus, self.stream_id, self.format, transport=self.transport, metadata=self.metadata)
        try:
            await producer.start()
        except BaseException:
            await bus.close()
            raise
        return bus, producer


async def _stop(bus: Bus, producer: Producer, error: BaseException | None) -> None:
    try:
        if error is None or isinstance(error, (KeyboardInterrupt, asyncio.CancelledError)):
            await producer.close("producer finished")
        else:
            await producer.close(f"producer raised {type(error).__name__}", failed=True)
    finally:
        await bus.close()


class Stream:
    """A stream opened synchronously; ``send`` copies a frame and returns its sequence number."""

    def __init__(self, options: _Options) -> None:
        self._options = options
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"framecast-{options.stream_id}", daemon=True)
        self._thread.start()
        try:
            self._bus, self.producer = self._call(options.start(), options.connect_timeout + 10)
        except BaseException:
            self._shutdown_loop()
            raise

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def send(self, frame: np.ndarray, timestamp_ns: int | None = None) -> int:
        return self.producer.send(frame, timestamp_ns)

    def set_metadata(self, **labels: str) -> None:
        """Replace the stream's labels, e.g. ``set_metadata(model="yolo-v9", detections="3")``."""
        self._call(self.producer.set_metadata(labels))

    @property
    def stopped(self) -> bool:
        """True once someone stopped the stream (``send`` will raise ``StreamClosed``)."""
        return self.producer.stop_requested.is_set()

    def close(self, error: BaseException | None = None) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._call(_stop(self._bus, self.producer, error), 30)
        finally:
            self._shutdown_loop()

    def _shutdown_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(exc)


class AsyncStream:
    """A stream opened with ``async with``; ``await send(frame)``."""

    def __init__(self, bus: Bus, producer: Producer) -> None:
        self._bus = bus
        self.producer = producer

    async def send(self, frame: np.ndarray, timestamp_ns: int | None = None) -> int:
        return await asyncio.to_thread(self.producer.send, frame, timestamp_ns)

    async def set_metadata(self, **labels: str) -> None:
        await self.producer.set_metadata(labels)

    @property
    def stopped(self) -> bool:
        return self.producer.stop_requested.is_set()

    async def close(self, error: BaseException | None = None) -> None:
        await _stop(self._bus, self.producer, error)


class _Opener:
    """What ``open`` returns: usable with ``with`` or ``async with``."""

    def __init__(self, options: _Options) -> None:
        self._options = options
        self._sync: Stream | None = None
        self._async: AsyncStream | None = None

    def __enter__(self) -> Stream:
        self._sync = Stream(self._options)
        return self._sync

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._sync is not None
        self._sync.close(exc)

    async def __aenter__(self) -> AsyncStream:
        bus, producer = await self._options.start()
        self._async = AsyncStream(bus, producer)
        return self._async

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        assert self._async is not None
        await self._async.close(exc)


def open(  # noqa: A001 - the natural name for the SDK's entry point
    stream_id: str,
    *,
    width: int,
    height: int,
    fps: int = 30,
    pix_fmt: PixFmt = "bgr24",
    transport: TransportChoice = "auto",
    nats_url: str | None = None,
    metadata: dict[str, str] | None = None,
    connect_timeout: float = 10.0,
) -> _Opener:
    """Open stream ``stream_id`` for frames of ``width`` x ``height`` at ``fps``.

    ``transport="auto"`` places the stream on an encoder of this host when one has room (frames
    through shared memory), else on one elsewhere (frames over NATS); ``"shm"`` or ``"nats"``
    allow only that one. ``FRAMECAST_HOST_ID`` names this host if its default cannot tell
    (framecast.frames.host_identity).
    ``nats_url`` defaults to FRAMECAST_NATS_URL, then nats://127.0.0.1:4222.
    """
    check_stream_id(stream_id)  # InvalidStreamId, a ValueError
    try:
        fmt = msgspec.convert(dict(width=width, height=height, fps=fps, pix_fmt=pix_fmt), VideoFormat)
    except msgspec.ValidationError as exc:
        field = str(exc).rpartition("$.")[2].rstrip("`")
        raise ValueError(f"stream {stream_id!r}: {field} {str(exc).split(' - at ')[0]}") from None
    url = nats_url or os.environ.get("FRAMECAST_NATS_URL", DEFAULT_NATS_URL)
    return _Opener(_Options(stream_id, fmt, transport, url, dict(metadata or {}), connect_timeout))

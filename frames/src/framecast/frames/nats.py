"""Frames over NATS, one message per frame: the transport when capture and encoder are on
different hosts.

Each frame is one message on the stream's frames subject (``subjects.frames(stream_id)``), its
payload the raw frame bytes, with two headers: ``Framecast-Seq`` (1, 2, ... per writer) and
``Framecast-Timestamp-Ns`` (capture time, ns since the Unix epoch). A frame must fit in the
server's ``max_payload`` together with those headers; the writer refuses bigger ones rather than
let the server close the connection. Large frames belong on the shared-memory ring.

The writer hands nats-py a memoryview of the frame, not ``tobytes()``: nats-py accepts any
buffer, but still copies the payload while building the protocol command (``b"HPUB ..." +
headers + payload + b"\\r\\n"``), so a frame is copied there, not here. ``send`` is blocking,
like the ring's, so a producer has one way to send whatever the transport: it runs in the
producer's thread and waits while the client's event loop publishes; once it returns nats-py
holds its own copy and the caller may refill its frame buffer.

The reader keeps only the newest frame, the way ``ring.RingReader`` does, and offers the same
interface to a plain thread (the encoder's FFmpeg feeder) while nats-py delivers on its asyncio
loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time

import numpy as np
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from framecast.proto import subjects
from framecast.proto.messages import NatsTransport, VideoFormat

from .validation import FrameTooLargeError, validate_frame

log = logging.getLogger(__name__)

SEQ_HEADER = "Framecast-Seq"
TIMESTAMP_HEADER = "Framecast-Timestamp-Ns"
DEFAULT_ALIVE_WITHIN_S = 5.0
_CLOSE_TIMEOUT_S = 5.0
PUBLISH_TIMEOUT_S = 10.0
"""How long ``send`` waits for the client's loop to take a frame before it says the loop is stuck."""


def _headers_size(headers: dict[str, str]) -> int:
    """Bytes the headers take on the wire (``NATS/1.0\\r\\n``, ``K: V\\r\\n`` each, ``\\r\\n``)."""
    return 12 + sum(len(key) + len(value) + 4 for key, value in headers.items())


def _stream_of(subject: str) -> str:
    try:
        return subjects.stream_id_of(subject)
    except ValueError:
        return subject


_MIN_INTERVAL = 0.8
"""Frames closer together than this fraction of the stream's frame interval are skipped."""


class NatsFrameWriter:
    """Publishes frames of one stream, one message each, on ``subject``.

    Frames sent faster than the stream's rate are skipped here (latest wins, as on the ring):
    NATS has no back-pressure, so a producer outrunning the encoder would otherwise fill the
    server's buffer for that connection until the server cuts the encoder off as a slow
    consumer. A skipped frame still takes a sequence number, so the reader counts it dropped.

    Create it on the NATS client's event loop; ``send`` from one other thread.
    """

    def __init__(self, nc: Client, subject: str, fmt: VideoFormat, *, paced: bool = True) -> None:
        """``paced=False`` publishes every frame however fast it comes (for measurements)."""
        self.subject = subject
        self.format = fmt
        self.transport = NatsTransport(subject=subject)
        self.skipped = 0
        self._nc = nc
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stream = _stream_of(subject)
        self._seq = 0
        self._min_interval = _MIN_INTERVAL / fmt.fps if paced else 0.0
        self._next_at = 0.0
        self._closed = False
        self.publish_timeout_s = PUBLISH_TIMEOUT_S

    @property
    def seq(self) -> int:
        """Sequence number of the last frame sent (0 before the first)."""
        return self._seq

    def send(self, frame: np.ndarray, timestamp_ns: int | None = None) -> int:
        """Publishes ``frame``; returns its sequence number.

        Blocks until nats-py has copied the frame into its outgoing buffer (on the client's
        loop, which must not be the calling thread), so the caller may reuse ``frame`` at once.
        Raises FrameFormatError for a frame not of the stream's format, FrameTooLargeError
        for one the server would refuse, and TimeoutError when the client's loop does not take
        the frame within ``publish_timeout_s`` (it is blocked or gone: waiting longer would
        hang the producer). A frame that is not C-contiguous is copied first.
        """
        if self._closed:
            raise ValueError(f"frame writer for {self.subject} is closed")
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("send() waits for the NATS client's loop: call it from another thread")
        validate_frame(frame, self.format, self._stream)
        seq = self._seq + 1
        now = time.monotonic()
        if now < self._next_at:
            self._seq = seq
            self.skipped += 1
            return seq
        self._next_at = now + self._min_interval
        timestamp = time.time_ns() if timestamp_ns is None else timestamp_ns
        headers = {SEQ_HEADER: str(seq), TIMESTAMP_HEADER: str(timestamp)}
        size = frame.nbytes + _headers_size(headers)
        if size > self._nc.max_payload:
            raise FrameTooLargeError(size, self._nc.max_payload)
        payload = memoryview(np.ascontiguousarray(frame)).cast("B")
        publish = self._nc.publish(self.subject, payload, headers=headers)  # type: ignore[arg-type]
        published = asyncio.run_coroutine_threadsafe(publish, self._loop)
        try:
            published.result(self.publish_timeout_s)
        except concurrent.futures.TimeoutError:
            published.cancel()
            raise TimeoutError(f"frame {seq} of {self._stream}: the NATS client's event loop did not take it "
                               f"within {self.publish_timeout_s:g} s (is that loop blocked?)") from None
        self._seq = seq
        return seq

    def close(self) -> None:
        """Refuses further frames. The reader learns of the end from the stream's ``StreamEnd``
        on its control subject, so nothing goes on the frames subject."""
        self._closed = True


class NatsFrameReader:
    """Receives one stream's frames and keeps only the newest, for a reading thread.

    Same interface as ``ring.RingReader``: ``wait_frame`` returns the newest frame not yet
    returned; ``frames`` counts frames returned and ``dropped`` the frames skipped after the
    first one received, whether lost on the way (gaps in ``Framecast-Seq``) or replaced by a
    newer one before the reader took them. Each frame is its own immutable bytes object, so a
    returned view stays valid as long as it is referenced and ``release`` has nothing to do.
    ``start`` and ``aclose`` run on the NATS client's loop; everything else is thread-safe.
    """

    def __init__(
        self, nc: Client, subject: str, fmt: VideoFormat,
        *, alive_within: float = DEFAULT_ALIVE_WITHIN_S,
    ) -> None:
        self.subject = subject
        self.format = fmt
        self.frames = 0
        self.dropped = 0
        self.last_timestamp_ns: int | None = None
        self._nc = nc
        self._alive_within = alive_within
        self._changed = threading.Condition()
        self._sub: Subscription | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._latest: tuple[int, int, bytes] | None = None  # seq, timestamp, frame; not taken
        self._received_seq = 0
        self._received_at = -float("inf")
        self._returned: tuple[int, bytes] | None = None  # seq, frame
        self._closed = False
        self._warned = False
        self._stopping: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribes to the frames subject."""
        if self._sub is None:
            self._loop = asyncio.get_running_loop()
            self._sub = await self._nc.subscribe(self.subject, cb=self._on_message)

    async def _on_message(self, msg: Msg) -> None:
        try:
            headers = msg.headers or {}
            seq = int(headers[SEQ_HEADER])
            timestamp = int(headers[TIMESTAMP_HEADER])
        except (KeyError, ValueError):
            self._warn_once(f"a message on {msg.subject} without valid framecast headers")
            return
        if len(msg.data) != self.format.frame_size:
            self._warn_once(
                f"a {len(msg.data)}-byte message on {msg.subject}, expected "
                f"{self.format.frame_size} bytes per frame"
            )
            return
        with self._changed:
            if self._latest is not None:
                self.dropped += 1
            if seq > self._received_seq + 1 and self._received_seq:
                self.dropped += seq - self._received_seq - 1
            self._received_seq = seq  # a restarted writer starts again from 1
            self._received_at = time.monotonic()
            self._latest = (seq, timestamp, msg.data)
            self._changed.notify_all()

    def _warn_once(self, what: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("ignoring %s (warned once per reader)", what)

    def wait_frame(self, timeout: float) -> memoryview | None:
        """The newest frame not yet returned, waiting up to ``timeout`` s; None if none came
        or the stream was marked closed."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._latest or self._closed, timeout):
                return None
            if self._latest is None:
                return None
            seq, timestamp, data = self._latest
            self._latest = None
            self.frames += 1
            self.last_timestamp_ns = timestamp
            self._returned = (seq, data)
        return memoryview(data)

    def last_frame(self) -> memoryview | None:
        """The frame last returned by ``wait_frame`` again, or None before the first."""
        returned = self._returned
        return None if returned is None else memoryview(returned[1])

    def release(self) -> None:
        """Nothing to give back: every frame is its own buffer (kept for interface parity)."""

    @property
    def seq(self) -> int:
        """Sequence number of the frame last returned (0 before the first)."""
        returned = self._returned
        return 0 if returned is None else returned[0]

    @property
    def closed(self) -> bool:
        """Whether ``mark_closed`` (or ``close``/``aclose``) was called."""
        return self._closed

    def mark_closed(self) -> None:
        """Records that the producer ended the stream and wakes a waiting reader."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def producer_alive(self) -> bool:
        """Whether a frame arrived within the last ``alive_within`` seconds."""
        return time.monotonic() - self._received_at < self._alive_within

    def discard_if_abandoned(self) -> None:
        """Nothing to remove: a producer gone from a NATS subject leaves nothing behind."""

    async def aclose(self) -> None:
        """Unsubscribes and marks the stream closed; safe to call twice."""
        self.mark_closed()
        sub, self._sub = self._sub, None
        if sub is not None and not (self._nc.is_closed or self._nc.is_draining):
            await sub.unsubscribe()

    def close(self) -> None:
        """``aclose`` from any thread: waits for it when called off the client's loop, schedules
        it when called on the loop."""
        loop = self._loop
        if loop is None or loop.is_closed() or self._sub is None:
            self.mark_closed()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self.mark_closed()
            self._stopping = loop.create_task(self.aclose())
        else:
            asyncio.run_coroutine_threadsafe(self.aclose(), loop).result(_CLOSE_TIMEOUT_S)

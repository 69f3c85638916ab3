"""The two ends of a frame transport, as producers and the encoder see them.

A producer (the SDK, a capture source) holds a ``FrameWriter`` and the encoder's pump a
``FrameReader``; neither knows whether a shared-memory ring or NATS is underneath.
``transport.open_writer`` and ``transport.open_reader`` pick the implementation.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from framecast.proto.messages import AnyTransport, VideoFormat


class FrameWriter(Protocol):
    """The producer side: one thread sends frames of one stream, newest wins downstream."""

    @property
    def format(self) -> VideoFormat:
        """The stream's frame format; ``send`` refuses any other."""
        ...

    @property
    def transport(self) -> AnyTransport:
        """Where the frames go, for the producer to announce to the encoders."""
        ...

    @property
    def seq(self) -> int:
        """Sequence number of the last frame sent (0 before the first)."""
        ...

    def send(self, frame: np.ndarray, timestamp_ns: int | None = None) -> int:
        """Hands ``frame`` on and returns its sequence number; ``frame`` may be reused at once.

        Blocking (a copy of the frame), never waiting for the reader; call it from a thread,
        not from the event loop the NATS client runs on. ``timestamp_ns`` is the capture
        time, ``time.time_ns()`` when omitted. Raises FrameFormatError for a frame not of
        ``format`` and FrameTooLargeError for one the transport cannot carry.
        """
        ...

    def close(self) -> None:
        """Ends the stream for the reader and releases the transport; safe to call twice."""
        ...


class FrameReader(Protocol):
    """The consumer side: a thread takes the newest frame; whatever it skipped is counted."""

    @property
    def frames(self) -> int:
        """Frames returned by ``wait_frame`` so far."""
        ...

    @property
    def dropped(self) -> int:
        """Frames skipped because a newer one arrived before they were read."""
        ...

    @property
    def closed(self) -> bool:
        """The producer ended the stream."""
        ...

    def wait_frame(self, timeout: float) -> memoryview | None:
        """A frame newer than the last one returned, valid until :meth:`release`.

        None when no newer frame came within ``timeout`` seconds."""
        ...

    def last_frame(self) -> memoryview | None:
        """The latest frame again (for repeats), valid until :meth:`release`; None if none yet."""
        ...

    def release(self) -> None:
        """The frame last returned is no longer used."""
        ...

    def producer_alive(self) -> bool:
        """Whether the producer is still there (heartbeat, pid, recent frames)."""
        ...

    def discard_if_abandoned(self) -> None:
        """Removes what a dead producer left behind (nobody else will); nothing if it lives."""
        ...

    async def aclose(self) -> None:
        """Detaches from the stream, on the event loop that opened the reader; safe twice."""
        ...

"""framecast frames: raw frames from a producer to the encoder, over a shared-memory ring on
one host or NATS across hosts, behind one writer and one reader interface; and, in
``framecast.frames.pattern``, the test pattern whose pixels carry their own timestamps.

    writer = open_writer("cam1", fmt, "shm", nc)       # producer side
    writer.send(frame)                                  # announce writer.transport
    reader = await open_reader(announce.transport, announce.format, nc)   # encoder side
    view = reader.wait_frame(0.1)
"""

from .host import host_identity
from .nats import NatsFrameReader, NatsFrameWriter
from .protocols import FrameReader, FrameWriter
from .ring import RingOpenError, RingReader, RingWriter, sweep_stale
from .transport import address, kind, open_reader, open_writer
from .validation import FrameFormatError, FrameTooLargeError, validate_frame

__all__ = [
    "FrameFormatError",
    "FrameReader",
    "FrameTooLargeError",
    "FrameWriter",
    "NatsFrameReader",
    "NatsFrameWriter",
    "RingOpenError",
    "RingReader",
    "RingWriter",
    "address",
    "host_identity",
    "kind",
    "open_reader",
    "open_writer",
    "sweep_stale",
    "validate_frame",
]

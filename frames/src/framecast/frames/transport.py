"""Choosing the transport: the one place that knows a stream's frames go over shm or NATS.

The producer names the transport it wants (``"shm"`` or ``"nats"``) and announces where its
frames are; the encoder opens a reader from that announcement. Everything else holds a
``FrameWriter`` or a ``FrameReader`` and never asks which one.
"""

from __future__ import annotations

from nats.aio.client import Client

from framecast.proto import subjects
from framecast.proto.messages import AnyTransport, NatsTransport, ShmTransport, TransportKind, VideoFormat

from .nats import NatsFrameReader, NatsFrameWriter
from .protocols import FrameReader, FrameWriter
from .ring import RingReader, RingWriter


def open_writer(stream_id: str, fmt: VideoFormat, kind: TransportKind, nc: Client) -> FrameWriter:
    """A writer for ``stream_id``'s frames over ``kind``; announce its ``transport``.

    Call on the event loop ``nc`` runs on. ``"shm"`` creates a new ring (``nc`` unused);
    ``"nats"`` publishes on the stream's frames subject.
    """
    match kind:
        case "shm":
            return RingWriter.create(stream_id, fmt)
        case "nats":
            return NatsFrameWriter(nc, subjects.frames(stream_id), fmt)
    raise ValueError(f"unknown frame transport {kind!r}")


async def open_reader(transport: AnyTransport, fmt: VideoFormat, nc: Client) -> FrameReader:
    """A reader for the frames a producer announced at ``transport``.

    Raises RingOpenError for a ring that cannot be attached to (gone, or not a framecast ring).
    """
    match transport:
        case ShmTransport(name=name):
            return RingReader.open(name)
        case NatsTransport(subject=subject):
            reader = NatsFrameReader(nc, subject, fmt)
            await reader.start()
            return reader
    raise ValueError(f"unknown frame transport {transport!r}")


def kind(transport: AnyTransport) -> TransportKind:
    """``"shm"`` or ``"nats"``: which transport an announced address is on."""
    return "shm" if isinstance(transport, ShmTransport) else "nats"


def address(transport: AnyTransport) -> str:
    """Where a stream's frames are (the ring's name or the NATS subject): two announces of
    one stream with the same address are the same producer asking again."""
    match transport:
        case ShmTransport(name=name):
            return name
        case NatsTransport(subject=subject):
            return subject
    raise ValueError(f"unknown frame transport {transport!r}")

"""A shared-memory ring of frame slots: how capture hands frames to the encoder on one host.

Raw frames are big (1080p bgr24 is 6.2 MB), so they cross from the producer (capture, or a CV
worker through the SDK) to the reader (the encoder) without a broker or a pipe in between: the
producer copies each frame once into a slot of a POSIX shared-memory segment and the reader
writes that slot to FFmpeg's stdin straight from shared memory. Latest frame wins: a reader that
lags skips to the newest frame and counts what it skipped; nothing queues.

One segment, ``/framecast-<stream_id>-<8 hex>``, made with ``posix_ipc`` + ``mmap`` (not
``multiprocessing.shared_memory``, whose resource tracker unlinks a segment when any process
that attached to it exits). Little-endian layout:

- header, 128 bytes: magic ``FCRING01`` (0), version u32 (8), width u32 (12), height u32 (16),
  fps u32 (20), pix_fmt code u32 (24), slots u32 (28), frame_size u64 (32), producer pid i32
  (40); then the state the lock guards: reader pid i32 (48), reader-held slot i32 (52, -1 =
  none), latest slot i32 (56, -1 = none yet), slot being written i32 (60, -1 = none), closed
  u32 (64: the producer ended the stream), latest seq u64 (72), producer heartbeat u64 (80,
  ``time.time_ns()`` of its last frame or ``heartbeat()``);
- ``slots`` slots of ``64 + frame_size`` bytes rounded up to 64: seq u64 (+0), capture
  timestamp ns u64 (+8), padding, frame data at +64.

Two named semaphores go with it: ``<name>-lock``, a mutex held only for the few header reads
and writes around a frame (never during the copy), and ``<name>-ready``, posted after a frame is
published so the reader blocks in ``sem_timedwait`` instead of polling. The writer never writes
the latest slot or the slot the reader holds, so a slot handed to the reader stays intact until
the reader takes another one or releases it; with at least 3 slots a free one always exists.

A peer killed inside the critical section would leave the mutex taken. Every acquire has a
timeout (1 s by default, the sections take microseconds); when it expires the waiter assumes
the holder died, logs a warning and takes the lock anyway, and the release that follows only
posts if the mutex is still taken, so the count heals back to 1. Neither side ever deadlocks,
and the producer never blocks for long on a dead encoder.

Clean-up: the producer unlinks segment and semaphores on ``close()``; a reader that finds the
producer dead (``producer_alive()`` is False) calls ``unlink()``; a reader that dies leaves
the producer running, and a new reader may attach at any time (one reader at a time: opening a
ring takes it over). ``sweep_stale()`` removes the rings of dead producers at start-up.
Liveness uses the producer's pid, so producer and reader must share a PID namespace.
Segments are created mode 0600: producer and reader run as the same user.
"""

from __future__ import annotations

import logging
import mmap
import os
import secrets
import struct
import time
from types import TracebackType
from typing import Self

import numpy as np
import posix_ipc

from framecast.proto.ids import check_stream_id
from framecast.proto.messages import ShmTransport, VideoFormat

from .validation import validate_frame

log = logging.getLogger(__name__)

MAGIC = b"FCRING01"
VERSION = 1
NAME_PREFIX = "framecast-"
DEFAULT_SLOTS = 4
DEFAULT_LOCK_TIMEOUT_S = 1.0
DEFAULT_STALE_AFTER_S = 5.0

_HEADER_SIZE = 128
_SLOT_HEADER_SIZE = 64
_PIX_FMT_CODES = {"bgr24": 1, "rgb24": 2, "gray": 3, "yuv420p": 4}
_PIX_FMTS = {code: pix_fmt for pix_fmt, code in _PIX_FMT_CODES.items()}

# magic, version, width, height, fps, pix_fmt, slots, frame_size, producer pid
_STATIC = struct.Struct("<8sIIIIIIQi")
# reader pid, reader-held slot, latest slot, slot being written, closed, latest seq, heartbeat
_STATE = struct.Struct("<iiiiI4xQQ")
_STATE_AT = 48
_READER_PID_AT = 48
_HELD_AT = 52
_LATEST_SLOT_AT = 56
_WRITING_AT = 60
_CLOSED_AT = 64
_LATEST_SEQ_AT = 72
_HEARTBEAT_AT = 80
_I32 = struct.Struct("<i")
_I32_PAIR = struct.Struct("<ii")
_U64 = struct.Struct("<Q")
_U64_PAIR = struct.Struct("<QQ")


class RingOpenError(Exception):
    """A ring that cannot be attached to: missing, not a framecast ring, or another version."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"cannot open frame ring {name}: {reason}")


def _slot_stride(frame_size: int) -> int:
    return _SLOT_HEADER_SIZE + (frame_size + 63) // 64 * 64


def _slot_offset(slot: int, stride: int) -> int:
    return _HEADER_SIZE + slot * stride


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _unlink(name: str) -> None:
    """Removes a ring's segment and semaphores; parts already gone are skipped."""
    for remove, part in (
        (posix_ipc.unlink_shared_memory, name),
        (posix_ipc.unlink_semaphore, name + "-lock"),
        (posix_ipc.unlink_semaphore, name + "-ready"),
    ):
        try:
            remove(part)
        except posix_ipc.ExistentialError:
            pass


class _Mapping:
    """The mapped segment, its two semaphores, and the lock discipline both sides share."""

    def __init__(
        self, name: str, mm: mmap.mmap, lock: posix_ipc.Semaphore,
        ready: posix_ipc.Semaphore, lock_timeout: float,
    ) -> None:
        self.name = name
        self.mm = mm
        self.lock = lock
        self.ready = ready
        self.lock_timeout = lock_timeout

    def acquire(self) -> None:
        try:
            self.lock.acquire(self.lock_timeout)
        except posix_ipc.BusyError:
            log.warning(
                "frame ring %s: lock held for over %.1f s; assuming its holder died, taking it",
                self.name, self.lock_timeout,
            )

    def release(self) -> None:
        if self.lock.value == 0:
            self.lock.release()

    def close(self, views: list[memoryview]) -> None:
        for sem in (self.lock, self.ready):
            sem.close()
        for view in views:
            try:
                view.release()
            except BufferError:
                pass
        try:
            self.mm.close()
        except BufferError:
            log.debug("frame ring %s: views still in use; unmapped when they are freed", self.name)


class RingWriter:
    """The producer side: copies each frame once into a free slot and publishes it.

    One thread writes. Use ``create``; the writer is a context manager that closes (and
    unlinks) the ring on exit.
    """

    def __init__(
        self, stream_id: str, fmt: VideoFormat, slots: int, mapping: _Mapping
    ) -> None:
        self.stream_id = stream_id
        self.format = fmt
        self.name = mapping.name
        self.transport = ShmTransport(name=mapping.name, slots=slots)
        self._m = mapping
        self._slots = slots
        stride = _slot_stride(fmt.frame_size)
        self._slot_at = [_slot_offset(i, stride) for i in range(slots)]
        self._frames = [
            np.ndarray(fmt.shape, np.uint8, buffer=mapping.mm, offset=at + _SLOT_HEADER_SIZE)
            for at in self._slot_at
        ]
        self._cursor = slots - 1
        self._seq = 0
        self._closed = False

    @classmethod
    def create(
        cls, stream_id: str, fmt: VideoFormat, slots: int = DEFAULT_SLOTS,
        *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
    ) -> RingWriter:
        """Creates a new ring for ``stream_id``; announce ``.transport`` to the encoder."""
        check_stream_id(stream_id)
        if slots < 3:
            raise ValueError(f"a frame ring needs at least 3 slots, got {slots}")
        name = f"/{NAME_PREFIX}{stream_id}-{secrets.token_hex(4)}"
        size = _HEADER_SIZE + slots * _slot_stride(fmt.frame_size)
        shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o600, size=size)
        try:
            try:
                mm = mmap.mmap(shm.fd, size)
            finally:
                shm.close_fd()
            _STATIC.pack_into(
                mm, 0, MAGIC, VERSION, fmt.width, fmt.height, fmt.fps,
                _PIX_FMT_CODES[fmt.pix_fmt], slots, fmt.frame_size, os.getpid(),
            )
            _STATE.pack_into(mm, _STATE_AT, 0, -1, -1, -1, 0, 0, time.time_ns())
            lock = posix_ipc.Semaphore(name + "-lock", posix_ipc.O_CREX, 0o600, 1)
            ready = posix_ipc.Semaphore(name + "-ready", posix_ipc.O_CREX, 0o600, 0)
        except BaseException:
            _unlink(name)
            raise
        return cls(stream_id, fmt, slots, _Mapping(name, mm, lock, ready, lock_timeout))

    @property
    def seq(self) -> int:
        """Sequence number of the last frame written (0 before the first)."""
        return self._seq

    def send(self, frame: np.ndarray, timestamp_ns: int | None = None) -> int:
        """Copies ``frame`` into the ring and publishes it; returns its sequence number.

        ``timestamp_ns`` is the capture time (``time.time_ns()`` when omitted). Never waits for
        the reader beyond the lock's few header reads and writes.
        """
        if self._closed:
            raise ValueError(f"frame ring {self.name} is closed")
        validate_frame(frame, self.format, self.stream_id)
        timestamp = time.time_ns() if timestamp_ns is None else timestamp_ns
        m = self._m
        mm = m.mm
        m.acquire()
        try:
            held, latest = _I32_PAIR.unpack_from(mm, _HELD_AT)
            slot = self._cursor
            for _ in range(self._slots):
                slot = (slot + 1) % self._slots
                if slot != held and slot != latest:
                    break
            _I32.pack_into(mm, _WRITING_AT, slot)
        finally:
            m.release()
        np.copyto(self._frames[slot], frame)
        self._cursor = slot
        seq = self._seq + 1
        m.acquire()
        try:
            _U64_PAIR.pack_into(mm, self._slot_at[slot], seq, timestamp)
            _I32_PAIR.pack_into(mm, _LATEST_SLOT_AT, slot, -1)
            _U64_PAIR.pack_into(mm, _LATEST_SEQ_AT, seq, time.time_ns())
        finally:
            m.release()
        self._seq = seq
        if m.ready.value == 0:  # a pending wake-up already covers this frame
            m.ready.release()
        return seq

    def heartbeat(self) -> None:
        """Tells the reader the producer is alive while it has no new frame to give."""
        if not self._closed:
            _U64.pack_into(self._m.mm, _HEARTBEAT_AT, time.time_ns())

    def close(self, unlink: bool = True) -> None:
        """Marks the stream ended, wakes the reader and (by default) unlinks the ring."""
        if self._closed:
            return
        self._closed = True
        m = self._m
        m.acquire()
        try:
            _I32.pack_into(m.mm, _CLOSED_AT, 1)
        finally:
            m.release()
        m.ready.release()
        if unlink:
            _unlink(self.name)
        self._frames = []
        m.close([])

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RingReader:
    """The encoder side: waits for the newest frame and hands out a view of its slot.

    A view returned by ``wait_frame`` or ``last_frame`` stays valid and unchanged until the
    next ``wait_frame``, ``release`` or ``close``. ``frames`` counts frames returned and
    ``dropped`` the frames published after the first one returned that this reader skipped.
    One thread reads.
    """

    def __init__(
        self, mapping: _Mapping, fmt: VideoFormat, slots: int, producer_pid: int,
        stale_after: float,
    ) -> None:
        self.name = mapping.name
        self.format = fmt
        self.slots = slots
        self.frames = 0
        self.dropped = 0
        self.last_timestamp_ns: int | None = None
        self._m = mapping
        self._producer_pid = producer_pid
        self._stale_after_ns = int(stale_after * 1e9)
        stride = _slot_stride(fmt.frame_size)
        self._slot_at = [_slot_offset(i, stride) for i in range(slots)]
        self._base = memoryview(mapping.mm)
        self._views = [
            self._base[at + _SLOT_HEADER_SIZE : at + _SLOT_HEADER_SIZE + fmt.frame_size]
            for at in self._slot_at
        ]
        self._slot = -1
        self._seq = 0
        self._closed = False

    @classmethod
    def open(
        cls, name: str, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
        stale_after: float = DEFAULT_STALE_AFTER_S,
    ) -> RingReader:
        """Attaches to the ring ``name`` (taking over from any earlier reader)."""
        try:
            shm = posix_ipc.SharedMemory(name)
        except posix_ipc.ExistentialError:
            raise RingOpenError(name, "no such shared-memory segment") from None
        try:
            if shm.size < _HEADER_SIZE:
                raise RingOpenError(name, f"segment of {shm.size} bytes is smaller than a header")
            mm = mmap.mmap(shm.fd, shm.size)
        finally:
            shm.close_fd()
        try:
            fmt, slots, pid = _parse_header(name, mm)
            lock = posix_ipc.Semaphore(name + "-lock")
            ready = posix_ipc.Semaphore(name + "-ready")
        except posix_ipc.ExistentialError:
            mm.close()
            raise RingOpenError(name, "its semaphores are gone") from None
        except RingOpenError:
            mm.close()
            raise
        mapping = _Mapping(name, mm, lock, ready, lock_timeout)
        mapping.acquire()
        try:
            _I32_PAIR.pack_into(mm, _READER_PID_AT, os.getpid(), -1)
        finally:
            mapping.release()
        return cls(mapping, fmt, slots, pid, stale_after)

    def wait_frame(self, timeout: float) -> memoryview | None:
        """The newest frame not yet returned, waiting up to ``timeout`` s; None if none came
        or the producer closed the stream."""
        if self._closed:
            return None
        deadline = time.monotonic() + timeout
        while True:
            view = self._take_latest()
            if view is not None:
                return view
            remaining = deadline - time.monotonic()
            if self.closed or remaining <= 0:
                return None
            try:
                self._m.ready.acquire(remaining)
            except posix_ipc.BusyError:
                return None

    def _take_latest(self) -> memoryview | None:
        m = self._m
        mm = m.mm
        m.acquire()
        try:
            slot = _I32.unpack_from(mm, _LATEST_SLOT_AT)[0]
            seq = _U64.unpack_from(mm, _LATEST_SEQ_AT)[0]
            if seq <= self._seq:
                return None
            _I32.pack_into(mm, _HELD_AT, slot)
            timestamp = _U64.unpack_from(mm, self._slot_at[slot] + 8)[0]
        finally:
            m.release()
        if self._seq:
            self.dropped += seq - self._seq - 1
        self.frames += 1
        self._seq = seq
        self._slot = slot
        self.last_timestamp_ns = timestamp
        return self._views[slot]

    def last_frame(self) -> memoryview | None:
        """The frame last returned by ``wait_frame`` again (to repeat it while no new frame
        comes), or None if there was none or it has been overwritten since ``release``."""
        if self._closed or self._slot < 0:
            return None
        m = self._m
        m.acquire()
        try:
            writing = _I32.unpack_from(m.mm, _WRITING_AT)[0]
            seq = _U64.unpack_from(m.mm, self._slot_at[self._slot])[0]
            if writing == self._slot or seq != self._seq:
                return None
            _I32.pack_into(m.mm, _HELD_AT, self._slot)
        finally:
            m.release()
        return self._views[self._slot]

    def release(self) -> None:
        """Gives the held slot back to the producer."""
        if self._closed:
            return
        m = self._m
        m.acquire()
        try:
            _I32.pack_into(m.mm, _HELD_AT, -1)
        finally:
            m.release()

    @property
    def seq(self) -> int:
        """Sequence number of the frame last returned (0 before the first)."""
        return self._seq

    @property
    def closed(self) -> bool:
        """Whether the producer has ended the stream (or this reader was closed)."""
        return self._closed or _I32.unpack_from(self._m.mm, _CLOSED_AT)[0] != 0

    def producer_alive(self) -> bool:
        """Whether the producer process exists and has written or beaten recently."""
        if self._closed or not _pid_alive(self._producer_pid):
            return False
        beat = _U64.unpack_from(self._m.mm, _HEARTBEAT_AT)[0]
        return time.time_ns() - beat < self._stale_after_ns

    def unlink(self) -> None:
        """Removes the ring's names (for a reader that found the producer dead)."""
        _unlink(self.name)

    def discard_if_abandoned(self) -> None:
        """Removes the ring's names if its producer is dead: nobody else will."""
        if not self.producer_alive():
            self.unlink()

    def close(self) -> None:
        """Detaches: frees the held slot and unmaps; returned views become invalid."""
        if self._closed:
            return
        m = self._m
        m.acquire()
        try:
            if _I32.unpack_from(m.mm, _READER_PID_AT)[0] == os.getpid():
                _I32_PAIR.pack_into(m.mm, _READER_PID_AT, 0, -1)
        finally:
            m.release()
        self._closed = True
        views, self._views = [*self._views, self._base], []
        m.close(views)

    async def aclose(self) -> None:
        """``close``, awaitable like the NATS reader's (nothing here needs the event loop)."""
        self.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _parse_header(name: str, mm: mmap.mmap) -> tuple[VideoFormat, int, int]:
    magic, version, width, height, fps, code, slots, frame_size, pid = _STATIC.unpack_from(mm)
    if magic != MAGIC:
        raise RingOpenError(name, "not a framecast ring (or not yet initialised)")
    if version != VERSION:
        raise RingOpenError(name, f"ring version {version}, this reader knows {VERSION}")
    if code not in _PIX_FMTS:
        raise RingOpenError(name, f"unknown pixel format code {code}")
    fmt = VideoFormat(width=width, height=height, fps=fps, pix_fmt=_PIX_FMTS[code])
    needed = _HEADER_SIZE + slots * _slot_stride(frame_size)
    if fmt.frame_size != frame_size or len(mm) < needed:
        raise RingOpenError(name, f"header says {slots} slots of {frame_size} bytes, "
                                  f"segment has {len(mm)} bytes")
    return fmt, slots, pid


def sweep_stale(prefix: str = "/dev/shm") -> list[str]:
    """Removes the rings whose producer process is gone, and orphaned ring semaphores.

    ``prefix`` is where the system keeps POSIX shared memory and semaphores (``sem.<name>``).
    Returns the POSIX names removed.
    """
    removed: list[str] = []
    for entry in sorted(os.listdir(prefix)):
        if not entry.startswith(NAME_PREFIX):
            continue
        try:
            with open(os.path.join(prefix, entry), "rb") as segment:
                head = segment.read(_STATIC.size)
        except OSError:
            continue
        if len(head) < _STATIC.size:
            continue
        fields = _STATIC.unpack(head)
        if fields[0] != MAGIC or _pid_alive(fields[-1]):
            continue
        for part in (entry, f"sem.{entry}-lock", f"sem.{entry}-ready"):
            try:
                os.unlink(os.path.join(prefix, part))
            except FileNotFoundError:
                continue
            removed.append("/" + part.removeprefix("sem."))
    for entry in sorted(os.listdir(prefix)):
        if not entry.startswith("sem." + NAME_PREFIX):
            continue
        segment = entry.removeprefix("sem.").removesuffix("-lock").removesuffix("-ready")
        if os.path.exists(os.path.join(prefix, segment)):
            continue
        try:
            os.unlink(os.path.join(prefix, entry))
        except FileNotFoundError:
            continue
        removed.append("/" + entry.removeprefix("sem."))
    if removed:
        log.info("removed stale frame rings: %s", ", ".join(removed))
    return removed

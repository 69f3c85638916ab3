"""Which encoder a stream goes to, and why.

An encoder on the producer's own host is preferred whenever one has room: frames then travel
through a shared-memory ring, the cheap path (docs/performance.md: NATS costs about 6x the CPU
per frame). Otherwise the stream goes to an encoder elsewhere, its frames over NATS. Encoders
with hardware sessions left come first (NVENC spares the CPU). Among the rest the choice is
weighted by the cube of their free slots, by rendezvous hashing on the stream id: an encoder
with twice the room is eight times as likely, and a stream asks the same encoder again as long
as the fleet is the same. Picking the one with the most room outright would send every stream
of a burst (a host lost, a drain) to one encoder, since all of them see the same heartbeats;
weighting by room alone would leave the fleet less even. ``python -m bench.simulate`` measured
the three (docs/scaling.md).

Why in the producer: it alone knows its host and which transports it may use, and it hears
every encoder's heartbeat (capacity, NVENC sessions left, draining). Encoders still decide for
themselves: one that filled up since its last heartbeat refuses, and the producer places the
stream again without it.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from framecast.proto.messages import EncoderHeartbeat, TransportChoice, TransportKind

FRESH_S = 1.5
"""An encoder not heard from for this long is presumed gone (three missed heartbeats)."""


@dataclass(frozen=True, slots=True)
class Placement:
    encoder_id: str
    transport: TransportKind
    reason: str


@dataclass(frozen=True, slots=True)
class Unplaced:
    """No encoder fits; ``reason`` says why, for the stream's record."""

    reason: str


class Fleet:
    """The encoders as their heartbeats show them: each one heard from within ``fresh_s``."""

    def __init__(self, fresh_s: float = FRESH_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.fresh_s = fresh_s
        self._clock = clock
        self._last: dict[str, tuple[float, EncoderHeartbeat | None]] = {}
        self._waiters: list[asyncio.Future[None]] = []

    def heard(self, heartbeat: EncoderHeartbeat) -> None:
        self._last[heartbeat.encoder_id] = (self._clock(), heartbeat)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait_heard(self, timeout: float) -> bool:
        """Whether a heartbeat arrives within ``timeout`` seconds from now."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return False
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        return True

    def claimed_by(self, encoder_id: str) -> None:
        """``encoder_id`` just answered a claim: alive now, even before its first heartbeat."""
        self._last[encoder_id] = (self._clock(), self._last.get(encoder_id, (0.0, None))[1])

    def alive(self) -> list[EncoderHeartbeat]:
        now = self._clock()
        return [beat for at, beat in self._last.values() if beat is not None and now - at < self.fresh_s]

    def silent_for(self, encoder_id: str) -> float:
        """Seconds since ``encoder_id`` was last heard from (infinite if never)."""
        last = self._last.get(encoder_id)
        return float("inf") if last is None else self._clock() - last[0]


def place(encoders: Collection[EncoderHeartbeat], *, host: str, choice: TransportChoice, stream_id: str,
          exclude: Collection[str] = ()) -> Placement | Unplaced:
    """Where ``stream_id``, produced on ``host`` and allowed ``choice`` of transport, should go."""
    open_ = [e for e in encoders if e.encoder_id not in exclude and not e.draining and _room(e) > 0]
    local = [e for e in open_ if e.host == host]
    remote = [e for e in open_ if e.host != host]
    if choice == "shm":
        pool = local
    elif choice == "nats":
        pool = open_
    else:
        pool = local or remote
    if not pool:
        return Unplaced(_why_not(encoders, host=host, choice=choice, exclude=exclude))
    best = min(pool, key=lambda e: _rank(e, stream_id))
    transport: TransportKind = "shm" if best.host == host and choice != "nats" else "nats"
    local_known = any(e.host == host for e in encoders)
    return Placement(best.encoder_id, transport, _reason(best, transport, host=host, choice=choice,
                                                         local_full=local_known and not local))


def _room(encoder: EncoderHeartbeat) -> int:
    """Streams it can still take: free slots, and no more than its hardware sessions left when
    it encodes on hardware with a limit (it refuses beyond them)."""
    room = encoder.capacity - encoder.active
    return room if encoder.hw_sessions_left is None else min(room, encoder.hw_sessions_left)


def _rank(encoder: EncoderHeartbeat, stream_id: str) -> tuple[int, float]:
    """Hardware first; then weighted rendezvous hashing: ``-ln(u) / room**3`` is smallest for a
    given encoder with probability proportional to its room cubed."""
    hardware_left = bool(encoder.hw_sessions_left)
    digest = hashlib.blake2b(f"{stream_id}/{encoder.encoder_id}".encode(), digest_size=8).digest()
    u = (int.from_bytes(digest, "big") + 1) / (2**64 + 1)  # in (0, 1)
    return (0 if hardware_left else 1, -math.log(u) / _room(encoder) ** 3)


def _reason(encoder: EncoderHeartbeat, transport: TransportKind, *, host: str, choice: TransportChoice,
            local_full: bool) -> str:
    room = f"{encoder.capacity - encoder.active} of {encoder.capacity} slots free"
    if encoder.hw_sessions_left:
        room += f", {encoder.hw_sessions_left} hardware sessions left"
    if transport == "shm":
        return f"{encoder.encoder_id} on this host (shared memory), {room}"
    if choice == "nats":
        where = "this host" if encoder.host == host else f"host {encoder.host}"
        return f"{encoder.encoder_id} on {where} (frames over NATS, as asked), {room}"
    why = "no encoder on this host can take it" if local_full else "no encoder runs on this host"
    return f"{encoder.encoder_id} on host {encoder.host} (frames over NATS: {why}), {room}"


def _why_not(encoders: Collection[EncoderHeartbeat], *, host: str, choice: TransportChoice,
             exclude: Collection[str]) -> str:
    if not encoders:
        return "no encoder is running; waiting for one"
    here = [e for e in encoders if e.host == host]
    if choice == "shm" and not here:
        return (f"no encoder runs on this host, and transport shm needs one ({len(encoders)} elsewhere: "
                "use transport auto or nats to reach them)")
    pool = here if choice == "shm" else list(encoders)
    draining = sum(e.draining for e in pool)
    refused = sum(e.encoder_id in exclude for e in pool)
    full = len(pool) - draining - refused
    parts = [f"{n} {what}" for n, what in ((full, "full"), (draining, "draining"), (refused, "just refused it"))
             if n]
    where = "on this host" if choice == "shm" else "known"
    return f"every encoder {where} is busy ({', '.join(parts)}); waiting for room"

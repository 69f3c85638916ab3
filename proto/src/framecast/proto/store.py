"""Stream state in JetStream: the current state in a KV bucket, every move in an events stream.

Writers never overwrite blindly: each transition reads the record, checks the move against the
state machine and writes with compare-and-set on the KV revision, retrying on a conflict. So two
services racing on one stream cannot silently undo each other, and a restarted service rebuilds
its view from the bucket while clients replay history from the stream.

A move is recorded once, even when NATS loses an answer (a cluster node dying mid-request, a
stream leader being elected): a write whose answer was lost is looked for in the bucket before
anything is written again, and each event carries an id JetStream stores once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import nats.errors
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api
from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from . import codec, subjects
from .bus import UNAVAILABLE, Bus
from .errors import BusError, CorruptRecord, InvalidFormat
from .kv import current_entries
from .messages import StreamRecord, StreamTransition
from .states import IllegalTransition, StreamState, check_transition

log = logging.getLogger("framecast.store")

T = TypeVar("T")

EVENTS_MAX_AGE_S = 7 * 24 * 3600
EVENTS_PER_STREAM = 10_000
EVENTS_DUPLICATE_WINDOW_S = 120.0
"""JetStream stores an event id once within this window (its default, relied on): longer than
RECORD_RETRY_S, so every offer of one event falls in it."""
RECORD_RETRY_S = 30.0
"""How long a transition keeps at a write it has begun while JetStream cannot answer: looking for
a write whose answer was lost, offering the event of a stored one. A cluster elects a new stream
leader within seconds of losing a node, and a client reconnects to another in less."""
RECORD_RETRY_PAUSE_S = 0.25


def replicas_for(bus: Bus) -> int:
    """How many copies JetStream should keep of framecast's state: 3 when the server is part
    of a cluster (it names its cluster in its INFO; clusters behind a load balancer do not
    advertise their members) or the client knows three servers, so the loss of any one node
    loses nothing; 1 on a single server. A cluster too small for 3 gets 1 (see _create)."""
    servers = {(uri.hostname, uri.port) for uri in bus.nc.servers}
    clustered = bool(getattr(bus.nc, "_server_info", {}).get("cluster"))
    return 3 if clustered or len(servers) >= 3 else 1


async def _with_fewer_copies_if_refused(create: Callable[[int], Awaitable[Any]], replicas: int) -> Any:
    """``create(replicas)``, or ``create(1)`` when JetStream has too few servers for that many."""
    try:
        return await create(replicas)
    except BadRequestError as exc:
        if replicas == 1 or exc.err_code not in _TOO_FEW_SERVERS:
            raise
        log.warning("JetStream cannot keep %d copies here (%s); keeping 1", replicas, exc.description)
        return await create(1)


_TOO_FEW_SERVERS = frozenset({10023, 10074})
"""JetStream's "insufficient resources" and "replicas > 1 not supported in non-clustered mode"."""


SETUP_RETRY_S = 30.0
"""How long opening framecast's streams and buckets keeps trying while JetStream does not answer
(a cluster still electing leaders, a server busy creating replicated streams): a service started
beside its NATS cluster waits for it instead of failing."""
PEER_OFFLINE = "peer offline"
"""JetStream's word for a placement that failed because a server it needs has not been heard
from lately: transient on a busy cluster (seen: "no suitable peers for placement, peer offline")."""


async def _until_jetstream_answers(what: str, setup: Callable[[], Awaitable[T]]) -> T:
    """``setup()``, tried again while JetStream does not answer, for up to SETUP_RETRY_S. Each
    step is idempotent: a create whose answer was lost is found by the next attempt."""
    deadline = time.monotonic() + SETUP_RETRY_S
    warned = False
    while True:
        try:
            return await setup()
        except (*UNAVAILABLE, BadRequestError) as exc:
            if time.monotonic() > deadline or (isinstance(exc, BadRequestError)
                                                and PEER_OFFLINE not in (exc.description or "")):
                raise
            if not warned:
                log.warning("JetStream does not answer yet (%s); opening %s again shortly",
                            str(exc) or type(exc).__name__, what)
                warned = True
            await asyncio.sleep(RECORD_RETRY_PAUSE_S * 2)


async def ensure_jetstream(bus: Bus) -> KeyValue:
    """Create (or bring up to date) the events stream and the state bucket; idempotent. New
    ones get :func:`replicas_for` copies; existing ones keep theirs (``set_replicas`` moves
    them, e.g. an R1 deployment that became a cluster)."""
    return await _until_jetstream_answers("the state store", lambda: _ensure_jetstream(bus))


async def _ensure_jetstream(bus: Bus) -> KeyValue:
    try:
        current = await bus.js.stream_info(subjects.EVENTS_STREAM)
    except NotFoundError:
        await _with_fewer_copies_if_refused(lambda n: bus.js.add_stream(_events_config(n)), replicas_for(bus))
    else:  # brought up to date, keeping its copies: an update never shrinks them
        await bus.js.update_stream(_events_config(current.config.num_replicas or 1))
    return await _open_bucket(bus, subjects.STATE_BUCKET, description="framecast current state of every stream")


async def open_bucket(bus: Bus, bucket: str, *, description: str, ttl: float | None = None) -> KeyValue:
    """A KV bucket of one entry per key: the existing one as it is (its copies may have been
    moved since), else a new one with :func:`replicas_for` copies."""
    return await _until_jetstream_answers(f"bucket {bucket}",
                                          lambda: _open_bucket(bus, bucket, description=description, ttl=ttl))


async def _open_bucket(bus: Bus, bucket: str, *, description: str, ttl: float | None = None) -> KeyValue:
    try:
        return await bus.js.key_value(bucket)
    except BucketNotFoundError:
        return await _with_fewer_copies_if_refused(lambda n: bus.js.create_key_value(
            bucket=bucket, history=1, ttl=ttl, replicas=n, description=description), replicas_for(bus))


def _events_config(replicas: int) -> api.StreamConfig:
    return api.StreamConfig(
        name=subjects.EVENTS_STREAM,
        subjects=[subjects.EVENTS_ALL],
        retention=api.RetentionPolicy.LIMITS,
        storage=api.StorageType.FILE,
        max_age=EVENTS_MAX_AGE_S,
        max_msgs_per_subject=EVENTS_PER_STREAM,
        discard=api.DiscardPolicy.OLD,
        duplicate_window=EVENTS_DUPLICATE_WINDOW_S,
        num_replicas=replicas,
        description="framecast stream lifecycle transitions",
    )


JETSTREAM_STREAMS = (subjects.EVENTS_STREAM, f"KV_{subjects.STATE_BUCKET}", f"KV_{subjects.REVOKED_BUCKET}")
"""Every JetStream stream framecast keeps: the events, the state bucket, the revocation bucket."""


async def set_replicas(bus: Bus, replicas: int) -> dict[str, int]:
    """Give every framecast JetStream stream ``replicas`` copies (JetStream moves the data);
    returns each existing stream's new count. How an R1 deployment becomes R3 on a cluster."""
    moved = {}
    for name in JETSTREAM_STREAMS:
        try:
            info = await bus.js.stream_info(name)
        except NotFoundError:
            continue
        info.config.num_replicas = replicas
        deadline = time.monotonic() + SETUP_RETRY_S
        while True:
            try:
                moved[name] = (await bus.js.update_stream(info.config)).config.num_replicas or 1
                break
            except BadRequestError as exc:  # e.g. more copies than the cluster has servers
                # a peer the meta leader has not heard from lately (a busy or restarting node)
                # comes back within seconds: ask again; anything else is final
                if PEER_OFFLINE not in (exc.description or "") or time.monotonic() > deadline:
                    raise BusError(f"JetStream refused {replicas} replicas for {name}: {exc.description}") from None
                await asyncio.sleep(RECORD_RETRY_PAUSE_S * 2)
    return moved


class StateStore:
    """Reads and writes stream records; every write is a checked, recorded transition."""

    def __init__(self, bus: Bus, kv: KeyValue, actor: str) -> None:
        self.bus = bus
        self.kv = kv
        self.actor = actor

    @classmethod
    async def open(cls, bus: Bus, actor: str) -> StateStore:
        return cls(bus, await ensure_jetstream(bus), actor)

    async def get(self, stream_id: str) -> StreamRecord | None:
        record, _ = await self._get(stream_id)
        return record

    async def _get(self, stream_id: str) -> tuple[StreamRecord | None, int]:
        """The record and its revision; ``CorruptRecord`` if it cannot be read."""
        record, revision, _ = await self._read(stream_id)
        return record, revision

    async def _read(self, stream_id: str) -> tuple[StreamRecord | None, int, bytes | None]:
        """The record, its revision and its bytes as stored."""
        try:
            entry = await self.kv.get(stream_id)
        except KeyNotFoundError:
            return None, 0, None
        return _record(entry), entry.revision or 0, entry.value

    async def list(self) -> list[StreamRecord]:
        """Every readable stream's record, in stream-id order (a snapshot that trusts the server,
        not nats-py's end-of-initial-values marker: see ``framecast.proto.kv``). A record that
        cannot be read is logged, with the command that repairs it, and left out: one bad
        record must not hide every other stream."""
        records = []
        for key, entry in sorted((await current_entries(self.kv)).items()):
            try:
                record = _record(entry)
            except CorruptRecord as exc:
                log.warning("%s", exc, extra={"stream_id": key})
                continue
            if record is not None:
                records.append(record)
        return records

    async def delete(self, stream_id: str) -> bool:
        """Forget a stream's record (an operator's last resort); whether there was one."""
        try:
            await self.kv.get(stream_id)
        except KeyNotFoundError:
            return False
        await self.kv.delete(stream_id)
        log.info("stream %s: record deleted", stream_id, extra={"stream_id": stream_id})
        return True

    async def repair(self, stream_id: str) -> StreamRecord | None:
        """Replace a record that cannot be read by a readable one, ``failed`` and saying why, so
        the stream can be requested again; ``None`` if there is no record. A readable record
        is left as it is."""
        while True:
            try:
                entry = await self.kv.get(stream_id)
            except KeyNotFoundError:
                return None
            try:
                record = _record(entry)
            except CorruptRecord as exc:
                now = time.time()
                record = StreamRecord(stream_id=stream_id, state=StreamState.FAILED, since=now, updated_at=now,
                                      reason=f"record repaired by an operator: it could not be read ({exc.detail})")
            else:
                if record is not None:
                    return record
                return None
            try:
                revision = await self.kv.update(stream_id, codec.encode(record), last=entry.revision)
            except (KeyWrongLastSequenceError, BadRequestError):
                continue
            await self._append_event(StreamTransition(
                stream_id=stream_id, previous=None, state=record.state, reason=record.reason,
                actor=self.actor, at=record.since, revision=revision))
            log.info("stream %s: record repaired (failed)", stream_id, extra={"stream_id": stream_id})
            return record

    async def transition(
        self,
        stream_id: str,
        state: StreamState,
        *,
        reason: str = "",
        only_from: frozenset[StreamState] | None = None,
        cause: str = "",
        attempt: int = 0,
        retry_in_s: float | None = None,
        **fields: Any,
    ) -> StreamRecord:
        """Move ``stream_id`` to ``state`` and record the move.

        ``fields`` update other record fields (source, format, encoder_id, ...). ``only_from``
        narrows the moves this caller accepts (e.g. only an active stream may stall); an
        ``IllegalTransition`` is raised for a move the state machine or the caller refuses.
        ``cause``, ``attempt`` and ``retry_in_s`` describe a retry; every move sets them (a
        move that is no retry clears them).

        Once begun, a move is carried to its end even if the caller is cancelled (a service
        stopping): a record written without its event would be a hole in every history.
        """
        fields.update(cause=cause, attempt=attempt, retry_in_s=retry_in_s)
        move = asyncio.ensure_future(self._transition(stream_id, state, reason, only_from, fields))
        move.add_done_callback(_retrieved)
        return await asyncio.shield(move)

    async def _transition(self, stream_id: str, state: StreamState, reason: str,
                          only_from: frozenset[StreamState] | None, fields: dict[str, Any]) -> StreamRecord:
        unanswered: dict[bytes, tuple[StreamRecord, StreamState | None]] = {}
        """Writes sent whose answer was lost, each with its move: stored or not, nobody said."""
        deadline = 0.0
        while True:
            try:
                current, revision, stored = await self._read(stream_id)
            except UNAVAILABLE:
                if not unanswered or time.monotonic() > deadline or self.bus.nc.is_closed:
                    raise  # nothing written (or no knowing any more): the caller may try again
                await asyncio.sleep(RECORD_RETRY_PAUSE_S)
                continue
            if stored is not None and stored in unanswered:  # stored after all: that was this move
                record, previous = unanswered[stored]
                break
            previous = current.state if current else None
            check_transition(stream_id, previous, state)
            if only_from is not None and previous not in only_from:
                raise IllegalTransition(stream_id, previous, state)
            now = time.time()
            if current is None:
                record = StreamRecord(
                    stream_id=stream_id, state=state, reason=reason, since=now, updated_at=now, **fields
                )
            else:
                record = msgspec.structs.replace(
                    current, state=state, reason=reason, since=now, updated_at=now, **fields
                )
            data = _checked(record)
            try:
                if revision:
                    revision = await self.kv.update(stream_id, data, last=revision)
                else:
                    revision = await self.kv.create(stream_id, data)
            except (KeyWrongLastSequenceError, BadRequestError):
                await asyncio.sleep(0)
                continue
            except NatsTimeout:
                # Sent, but the answer was lost (the node or the stream leader went away): it
                # may be stored. Writing the move again would find the stream already moved and
                # lose its event, so read the record until it says.
                if not unanswered:
                    deadline = time.monotonic() + RECORD_RETRY_S
                elif time.monotonic() > deadline or self.bus.nc.is_closed:
                    raise
                unanswered[data] = (record, previous)
                continue
            break
        await self._append_event(
            StreamTransition(
                stream_id=stream_id,
                previous=previous,
                state=state,
                reason=reason,
                actor=self.actor,
                at=record.since,
                revision=revision,
                encoder_id=record.encoder_id,
                encoder_kind=record.encoder_kind,
                metadata=record.metadata,
                cause=fields["cause"],
                attempt=fields["attempt"],
                retry_in_s=fields["retry_in_s"],
            ),
        )
        log.info(
            "stream %s: %s -> %s%s",
            stream_id,
            previous.value if previous else "new",
            state.value,
            f" ({reason})" if reason else "",
            extra={"stream_id": stream_id, "state": state.value, "revision": revision},
        )
        return record

    async def _append_event(self, event: StreamTransition) -> None:
        """Append a stored move to the events stream. The record is written, so its event must
        follow: it is offered again while JetStream cannot take it, for up to RECORD_RETRY_S. Its
        id (the stream and the record's revision) makes JetStream keep one copy when an offer
        was stored but its answer lost."""
        deadline = time.monotonic() + RECORD_RETRY_S
        while True:
            try:
                await self.bus.js_publish(subjects.events(event.stream_id), event,
                                          msg_id=f"{event.stream_id}.{event.revision}")
                return
            except UNAVAILABLE as exc:
                if time.monotonic() > deadline or self.bus.nc.is_closed:
                    log.error("stream %s: the move to %s is in the bucket but its event may not be stored: %s",
                              event.stream_id, event.state.value, str(exc) or type(exc).__name__,
                              extra={"stream_id": event.stream_id, "state": event.state.value,
                                     "revision": event.revision})
                    raise
                await asyncio.sleep(RECORD_RETRY_PAUSE_S)

    async def update(
        self, stream_id: str, *, only_in: frozenset[StreamState] | None = None, **fields: Any
    ) -> StreamRecord | None:
        """Change record fields other than the state (no event). ``None`` if the stream is gone,
        or (with ``only_in``) no longer in one of those states when the write would happen."""
        while True:
            current, revision = await self._get(stream_id)
            if current is None or (only_in is not None and current.state not in only_in):
                return None
            record = msgspec.structs.replace(current, updated_at=time.time(), **fields)
            try:
                await self.kv.update(stream_id, _checked(record), last=revision)
                return record
            except (KeyWrongLastSequenceError, BadRequestError):
                await asyncio.sleep(0)

    async def watch(self, stream_id: str | None = None) -> AsyncIterator[tuple[str, StreamRecord | None]]:
        """Current records first, then every change, as ``(stream_id, record)``; ``None`` = deleted."""
        watcher = await (self.kv.watch(stream_id) if stream_id else self.kv.watchall())
        try:
            async for entry in watcher:
                if entry is None:  # nats-py's marker for "initial values delivered"
                    continue
                if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                    yield entry.key, None
                    continue
                try:
                    record = _record(entry)
                except CorruptRecord as exc:
                    log.warning("%s", exc, extra={"stream_id": entry.key})
                    continue
                yield entry.key, record
        finally:
            await watcher.stop()

    async def history(
        self, stream_id: str | None = None, *, after: int = 0
    ) -> AsyncIterator[tuple[int, StreamTransition]]:
        """Replay stored transitions (all streams, or one) with their stream sequence numbers,
        starting after sequence ``after``, then keep yielding new ones as they happen."""
        subject = subjects.events(stream_id) if stream_id else subjects.EVENTS_ALL
        if after:
            policy = {"deliver_policy": api.DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": after + 1}
        else:
            policy = {"deliver_policy": api.DeliverPolicy.ALL}
        sub = await self.bus.js.subscribe(
            subject,
            ordered_consumer=True,
            config=api.ConsumerConfig(**policy),
        )
        try:
            async for msg in sub.messages:
                try:
                    event = codec.decode(msg.subject, msg.data, StreamTransition)
                except codec.MessageDecodeError as exc:
                    log.warning("%s", exc)
                    continue
                yield msg.metadata.sequence.stream, event
        finally:
            with contextlib.suppress(nats.errors.ConnectionClosedError):  # the caller closed the bus first
                await sub.unsubscribe()


def _retrieved(move: asyncio.Future[Any]) -> None:
    """Mark a move's failure as seen: its caller, if still there, gets it raised; one that was
    cancelled meanwhile has gone (the move logged what matters: an event it could not store)."""
    if not move.cancelled():
        move.exception()


def _record(entry: KeyValue.Entry) -> StreamRecord | None:
    """The entry's record; ``None`` for a deleted stream; ``CorruptRecord`` if unreadable."""
    if entry.value is None or entry.operation in (KV_DEL, KV_PURGE):
        return None
    try:
        return codec.decode(subjects.STATE_BUCKET, entry.value, StreamRecord)
    except codec.MessageDecodeError as exc:
        where = f"field '{exc.field}': " if exc.field else ""
        raise CorruptRecord(entry.key, f"{where}{exc.detail}") from None


def _checked(record: StreamRecord) -> bytes:
    """The record's bytes, refused if a reader could not decode them: whatever a writer holds,
    the bucket never gets a record that would stop its readers."""
    data = codec.encode(record)
    try:
        codec.decode(subjects.STATE_BUCKET, data, StreamRecord)
    except codec.MessageDecodeError as exc:
        raise InvalidFormat(f"stream {record.stream_id}: refusing to store an unreadable record ({exc})") from None
    return data

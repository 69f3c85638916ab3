"""Stream state in JetStream: checked transitions, compare-and-set, replayable history."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import nats.js.errors
import pytest
from nats.errors import TimeoutError as NatsTimeout

from framecast.devstack.nats import NatsServer
from framecast.proto.bus import Bus
from framecast.proto.messages import TestPatternSource, VideoFormat
from framecast.proto.states import IllegalTransition, StreamState
from framecast.proto.store import SETUP_RETRY_S, StateStore, ensure_jetstream
from tests.support.services import eventually

S = StreamState


async def test_setup_is_idempotent(bus: Bus) -> None:
    await ensure_jetstream(bus)
    await ensure_jetstream(bus)


async def test_transitions_update_state_and_history(bus: Bus, stream_id: str) -> None:
    store = await StateStore.open(bus, "test")
    fmt = VideoFormat(width=640, height=360)
    await store.transition(stream_id, S.REQUESTED, source=TestPatternSource(), format=fmt)
    await store.transition(stream_id, S.STARTING, encoder_id="e1", encoder_kind="libx264")
    record = await store.transition(stream_id, S.PUBLISHING)
    assert record.state is S.PUBLISHING
    assert record.format == fmt and record.encoder_kind == "libx264"
    assert (await store.get(stream_id)) == record
    events = []
    async for _, event in store.history(stream_id):
        events.append(event)
        if len(events) == 3:
            break
    assert [(e.previous, e.state) for e in events] == [
        (None, S.REQUESTED), (S.REQUESTED, S.STARTING), (S.STARTING, S.PUBLISHING)
    ]
    assert events[-1].encoder_id == "e1" and events[-1].actor == "test"


async def test_illegal_transition_is_rejected_and_not_recorded(bus: Bus, stream_id: str) -> None:
    store = await StateStore.open(bus, "test")
    await store.transition(stream_id, S.REQUESTED)
    with pytest.raises(IllegalTransition):
        await store.transition(stream_id, S.LIVE)
    assert (await store.get(stream_id)).state is S.REQUESTED
    with pytest.raises(IllegalTransition):
        await store.transition(stream_id, S.STALLED, only_from=frozenset({S.PUBLISHING}))


async def test_history_resumes_after_a_sequence(bus: Bus, stream_id: str) -> None:
    store = await StateStore.open(bus, "test")
    await store.transition(stream_id, S.REQUESTED)
    await store.transition(stream_id, S.STARTING)
    first = None
    async for seq, _ in store.history(stream_id):
        first = seq
        break
    async for _, event in store.history(stream_id, after=first):
        assert event.state is S.STARTING
        break


async def test_concurrent_writers_cannot_both_win(bus: Bus, stream_id: str) -> None:
    store = await StateStore.open(bus, "test")
    await store.transition(stream_id, S.REQUESTED)
    await store.transition(stream_id, S.STARTING)
    # Two services race: one stops the stream, the other reports it publishing. Whatever the
    # order, each write is checked against the state it really replaced.
    results = await asyncio.gather(
        store.transition(stream_id, S.STOPPING),
        store.transition(stream_id, S.PUBLISHING),
        return_exceptions=True,
    )
    final = (await store.get(stream_id)).state
    assert final in (S.STOPPING, S.PUBLISHING)
    history = []
    async for _, event in store.history(stream_id):
        history.append(event)
        if event.revision and len(history) >= 2 + sum(not isinstance(r, Exception) for r in results):
            break
    for event in history[1:]:
        assert event.previous is not None


async def moves(store: StateStore, stream_id: str, count: int) -> list[tuple[S | None, S]]:
    """The first ``count`` stored events of ``stream_id``, as (previous, state)."""
    events: list[tuple[S | None, S]] = []

    async def read() -> None:
        async for _, event in store.history(stream_id):
            events.append((event.previous, event.state))
            if len(events) == count:
                return

    await asyncio.wait_for(read(), 10)
    return events


async def test_a_move_whose_answer_was_lost_is_recorded_once(
    bus: Bus, stream_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cluster node dies between storing the record and answering: the writer hears nothing.
    # Writing the move again would find the stream already moved and drop its event.
    store = await StateStore.open(bus, "test")
    await store.transition(stream_id, S.REQUESTED)
    update, lost = store.kv.update, []

    async def stored_unanswered(*args: Any, **kwargs: Any) -> int:
        revision = await update(*args, **kwargs)
        if not lost:
            lost.append(revision)
            raise NatsTimeout
        return revision

    monkeypatch.setattr(store.kv, "update", stored_unanswered)
    record = await store.transition(stream_id, S.STARTING, encoder_id="e1")
    assert record.state is S.STARTING and lost
    await store.transition(stream_id, S.PUBLISHING)
    assert await moves(store, stream_id, 3) == [(None, S.REQUESTED), (S.REQUESTED, S.STARTING),
                                                (S.STARTING, S.PUBLISHING)]


async def test_an_event_offered_again_is_stored_once(
    bus: Bus, stream_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The event's first offer finds no stream leader (one is being elected), the second is
    # stored but its answer lost, the third is a copy JetStream drops (same id).
    store = await StateStore.open(bus, "test")
    publish, offers = bus.js_publish, []

    async def flaky(subject: str, message: msgspec.Struct, **kwargs: Any) -> int:
        offers.append(kwargs.get("msg_id"))
        if len(offers) == 1:
            raise nats.js.errors.NoStreamResponseError
        sequence = await publish(subject, message, **kwargs)
        if len(offers) == 2:
            raise NatsTimeout
        return sequence

    monkeypatch.setattr(bus, "js_publish", flaky)
    await store.transition(stream_id, S.REQUESTED)
    assert len(offers) == 3 and len(set(offers)) == 1 and offers[0]
    monkeypatch.setattr(bus, "js_publish", publish)
    await store.transition(stream_id, S.STARTING)
    assert await moves(store, stream_id, 2) == [(None, S.REQUESTED), (S.REQUESTED, S.STARTING)]


async def test_a_move_whose_caller_is_cancelled_still_gets_its_event(
    bus: Bus, stream_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A service stopping cancels its tasks; one may be between writing a record and its event.
    store = await StateStore.open(bus, "test")
    publish, offered, release = bus.js_publish, asyncio.Event(), asyncio.Event()

    async def held(subject: str, message: msgspec.Struct, **kwargs: Any) -> int:
        offered.set()
        await release.wait()
        return await publish(subject, message, **kwargs)

    monkeypatch.setattr(bus, "js_publish", held)
    caller = asyncio.create_task(store.transition(stream_id, S.REQUESTED))
    await asyncio.wait_for(offered.wait(), 5)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    assert await moves(store, stream_id, 1) == [(None, S.REQUESTED)]


async def test_list_returns_every_stream(bus: Bus, stream_id: str) -> None:
    store = await StateStore.open(bus, "test")
    await store.transition(stream_id, S.REQUESTED)
    assert stream_id in {r.stream_id for r in await store.list()}


async def test_opening_the_store_waits_for_a_jetstream_that_does_not_answer_yet(caplog: pytest.LogCaptureFixture) -> None:
    """A service started beside its NATS cluster (still electing leaders, or busy) waits for
    JetStream instead of failing: here JetStream is off when the store is opened, and the
    server is restarted with it once the store has said it is waiting."""
    server = await NatsServer(jetstream=False).start()
    bus = await Bus.connect(server.url, client_id="early")
    try:
        opening = asyncio.create_task(StateStore.open(bus, "early"))
        await eventually(lambda: "JetStream does not answer yet" in caplog.text, "the store says it waits")
        assert not opening.done()
        server.jetstream = True
        await server.restart()
        store = await asyncio.wait_for(opening, SETUP_RETRY_S)
        assert await store.list() == []
    finally:
        await bus.close()
        await server.stop()

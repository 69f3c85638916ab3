"""Stream state in JetStream: checked transitions, compare-and-set, replayable history."""

from __future__ import annotations

import asyncio

import pytest

from framecast.proto.bus import Bus
from framecast.proto.messages import TestPatternSource, VideoFormat
from framecast.proto.states import IllegalTransition, StreamState
from framecast.proto.store import StateStore, ensure_jetstream

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


async def test_list_returns_every_stream(bus: Bus, stream_id: str) -> None:
    store = await StateStore.open(bus, "test")
    await store.transition(stream_id, S.REQUESTED)
    assert stream_id in {r.stream_id for r in await store.list()}

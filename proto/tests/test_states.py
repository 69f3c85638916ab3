"""The stream state machine: every legal move accepted, every other one rejected."""

from __future__ import annotations

import itertools

import pytest

from framecast.proto.states import TRANSITIONS, IllegalTransition, StreamState, check_transition

S = StreamState
ALL_PAIRS = list(itertools.product(S, S))
LEGAL = [(a, b) for a, b in ALL_PAIRS if b in TRANSITIONS[a]]
ILLEGAL = [(a, b) for a, b in ALL_PAIRS if b not in TRANSITIONS[a]]


@pytest.mark.parametrize(("current", "target"), LEGAL, ids=lambda s: s.value)
def test_legal_moves_are_accepted(current: StreamState, target: StreamState) -> None:
    check_transition("cam1", current, target)


@pytest.mark.parametrize(("current", "target"), ILLEGAL, ids=lambda s: s.value)
def test_illegal_moves_are_rejected_with_what_is_allowed(current: StreamState, target: StreamState) -> None:
    with pytest.raises(IllegalTransition) as caught:
        check_transition("cam1", current, target)
    message = str(caught.value)
    assert f"from {current.value} to {target.value}" in message
    assert "allowed next states" in message
    assert caught.value.current is current and caught.value.target is target


@pytest.mark.parametrize("target", [s for s in S if s is not S.REQUESTED], ids=lambda s: s.value)
def test_a_new_stream_must_start_as_requested(target: StreamState) -> None:
    check_transition("cam1", None, S.REQUESTED)
    with pytest.raises(IllegalTransition, match="unknown stream"):
        check_transition("cam1", None, target)


def test_the_happy_path_is_legal_in_order() -> None:
    path = [S.REQUESTED, S.STARTING, S.PUBLISHING, S.LIVE, S.STOPPING, S.STOPPED]
    for current, target in itertools.pairwise(path):
        check_transition("cam1", current, target)


def test_stalled_and_failed_are_reachable_from_every_active_state() -> None:
    for state in (S.STARTING, S.PUBLISHING, S.LIVE):
        assert S.STALLED in TRANSITIONS[state]
    for state in (S.REQUESTED, S.STARTING, S.PUBLISHING, S.LIVE, S.STALLED, S.STOPPING):
        assert S.FAILED in TRANSITIONS[state]

"""The stream lifecycle as one state machine that every service consults before writing a state.

A transition not listed here is a bug or a race, and is rejected rather than silently applied:
the state store refuses it and the caller learns which move was illegal.
"""

from __future__ import annotations

import enum


class StreamState(enum.StrEnum):
    REQUESTED = "requested"
    STARTING = "starting"
    PUBLISHING = "publishing"
    LIVE = "live"
    STALLED = "stalled"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


S = StreamState

#: Every legal move. Restarting an encoder moves an active stream back to ``starting``; a
#: stopped or failed stream can be requested again under the same id.
TRANSITIONS: dict[StreamState, frozenset[StreamState]] = {
    S.REQUESTED: frozenset({S.STARTING, S.STOPPING, S.FAILED}),
    S.STARTING: frozenset({S.PUBLISHING, S.STALLED, S.STOPPING, S.FAILED}),
    S.PUBLISHING: frozenset({S.LIVE, S.STARTING, S.STALLED, S.STOPPING, S.FAILED}),
    S.LIVE: frozenset({S.PUBLISHING, S.STARTING, S.STALLED, S.STOPPING, S.FAILED}),
    S.STALLED: frozenset({S.STARTING, S.PUBLISHING, S.LIVE, S.STOPPING, S.FAILED}),
    S.STOPPING: frozenset({S.STOPPED, S.FAILED}),
    S.STOPPED: frozenset({S.REQUESTED}),
    S.FAILED: frozenset({S.REQUESTED}),
}

ACTIVE: frozenset[StreamState] = frozenset(
    {S.REQUESTED, S.STARTING, S.PUBLISHING, S.LIVE, S.STALLED}
)
TERMINAL: frozenset[StreamState] = frozenset({S.STOPPED, S.FAILED})


class IllegalTransition(Exception):
    """A state change the lifecycle does not allow."""

    def __init__(self, stream_id: str, current: StreamState | None, target: StreamState) -> None:
        self.stream_id = stream_id
        self.current = current
        self.target = target
        allowed = sorted(TRANSITIONS[current]) if current is not None else [S.REQUESTED]
        was = current.value if current is not None else "nothing (unknown stream)"
        super().__init__(
            f"stream {stream_id!r}: cannot go from {was} to {target.value}; "
            f"allowed next states: {', '.join(allowed)}"
        )


def check_transition(stream_id: str, current: StreamState | None, target: StreamState) -> None:
    """Raise ``IllegalTransition`` unless ``current -> target`` is a legal move.

    ``current`` is ``None`` for a stream that has never existed; only ``requested`` may start one.
    """
    if current is None:
        if target is not S.REQUESTED:
            raise IllegalTransition(stream_id, current, target)
        return
    if target not in TRANSITIONS[current]:
        raise IllegalTransition(stream_id, current, target)

"""EventPrinter says a retried failure once, reading the retry from the structured fields."""

from __future__ import annotations

from framecast.proto.messages import StreamTransition
from framecast.proto.states import StreamState
from framecast.runtime.stream_commands import EventPrinter

S = StreamState


def _event(state: StreamState, reason: str, **retry: object) -> StreamTransition:
    return StreamTransition(stream_id="cam1", previous=None, state=state, reason=reason, at=0.0, **retry)  # type: ignore[arg-type]


def test_a_failure_retried_again_and_again_is_printed_once() -> None:
    lines: list[str] = []
    printer = EventPrinter(lines.append)
    down = "MediaMTX is not reachable"
    printer(_event(S.STARTING, "claimed"))
    printer(_event(S.STALLED, f"{down} (retrying in 0.4 s)", cause=down, attempt=1, retry_in_s=0.4))
    printer(_event(S.STARTING, f"restarting FFmpeg: {down}", cause=down, attempt=2))
    printer(_event(S.STALLED, f"{down} (retrying in 1.3 s)", cause=down, attempt=2, retry_in_s=1.3))
    printer(_event(S.PUBLISHING, "publishing with libx264"))
    assert [line.split(" ", 1)[1] for line in lines] == [
        "cam1: starting (claimed)",
        f"cam1: stalled ({down} (retrying in 0.4 s))",
        "cam1: publishing (publishing with libx264)",
    ]


def test_a_new_failure_is_printed() -> None:
    lines: list[str] = []
    printer = EventPrinter(lines.append)
    printer(_event(S.STALLED, "a (retrying now)", cause="a", attempt=1, retry_in_s=0.0))
    printer(_event(S.STALLED, "b (retrying now)", cause="b", attempt=2, retry_in_s=0.0))
    assert len(lines) == 2

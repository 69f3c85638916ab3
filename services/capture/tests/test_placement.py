"""Placement: which encoder a stream goes to, on which transport, and the reason it gives."""

from __future__ import annotations

import collections

import pytest

from framecast.capture.placement import Fleet, Placement, Unplaced, place
from framecast.proto.messages import EncoderHeartbeat


def encoder(name: str, host: str, *, capacity: int = 8, active: int = 0, hw: int | None = None,
            draining: bool = False) -> EncoderHeartbeat:
    return EncoderHeartbeat(encoder_id=name, capacity=capacity, active=active, hw_sessions_left=hw, at=0.0,
                            host=host, draining=draining)


def test_an_encoder_on_the_producers_host_wins_even_with_less_room() -> None:
    fleet = [encoder("far", "h2", active=0), encoder("near", "h1", active=6)]
    chosen = place(fleet, host="h1", choice="auto", stream_id="cam1")
    assert chosen == Placement("near", "shm", "near on this host (shared memory), 2 of 8 slots free")


def test_with_no_room_on_its_host_a_stream_goes_elsewhere_over_nats() -> None:
    fleet = [encoder("near", "h1", capacity=2, active=2), encoder("far", "h2", active=3)]
    chosen = place(fleet, host="h1", choice="auto", stream_id="cam1")
    assert isinstance(chosen, Placement) and (chosen.encoder_id, chosen.transport) == ("far", "nats")
    assert chosen.reason == "far on host h2 (frames over NATS: no encoder on this host can take it), 5 of 8 slots free"


def test_shm_only_waits_for_room_on_its_own_host_and_says_so() -> None:
    assert place([encoder("far", "h2")], host="h1", choice="shm", stream_id="cam1") == Unplaced(
        "no encoder runs on this host, and transport shm needs one (1 elsewhere: use transport auto or nats "
        "to reach them)")
    full = [encoder("near", "h1", capacity=1, active=1), encoder("far", "h2")]
    assert place(full, host="h1", choice="shm", stream_id="cam1") == Unplaced(
        "every encoder on this host is busy (1 full); waiting for room")


def shares(fleet: list[EncoderHeartbeat], streams: int = 2000, **where: str) -> collections.Counter[str]:
    """How many of ``streams`` stream ids placement sends to each encoder of ``fleet``."""
    counts: collections.Counter[str] = collections.Counter()
    for n in range(streams):
        chosen = place(fleet, stream_id=f"cam{n}", **where)  # type: ignore[arg-type]
        assert isinstance(chosen, Placement)
        counts[chosen.encoder_id] += 1
    return counts


def test_choices_are_weighted_by_room_so_a_burst_does_not_pile_onto_one_encoder() -> None:
    """Every stream of a burst (a host lost, a drain) sees the same heartbeats: taking the one
    with the most room outright would send them all there."""
    counts = shares([encoder("roomy", "h2", active=2), encoder("busy", "h3", active=6)], host="h1", choice="auto")
    assert 15 < counts["roomy"] / counts["busy"] < 45  # 6 free slots against 2: 27 times as likely
    assert counts["busy"] > 0, "but not never: a burst spreads"
    assert shares([encoder("near", "h1", active=7), encoder("far", "h2", active=1)],
                  host="h1", choice="nats")["far"] > 1900, "nats weighs every host by room alone"


def test_the_same_stream_asks_the_same_encoder_while_the_fleet_is_the_same() -> None:
    fleet = [encoder(f"enc{n}", "h2", active=n) for n in range(5)]
    first = place(fleet, host="h1", choice="auto", stream_id="cam7")
    assert all(place(fleet, host="h1", choice="auto", stream_id="cam7") == first for _ in range(5))


def test_an_encoder_out_of_hardware_sessions_is_full_whatever_its_slots() -> None:
    """It refuses a stream beyond its NVENC sessions, so placement must not offer it one."""
    fleet = [encoder("gpu", "h1", capacity=16, active=8, hw=0), encoder("cpu", "h2", active=7)]
    chosen = place(fleet, host="h1", choice="auto", stream_id="cam1")
    assert isinstance(chosen, Placement) and chosen.encoder_id == "cpu"


def test_hardware_sessions_left_outrank_free_slots() -> None:
    fleet = [encoder("cpu", "h2", active=0), encoder("gpu", "h3", active=5, hw=2)]
    chosen = place(fleet, host="h1", choice="auto", stream_id="cam1")
    assert isinstance(chosen, Placement) and chosen.encoder_id == "gpu"
    assert chosen.reason.endswith("3 of 8 slots free, 2 hardware sessions left")


def test_draining_full_and_refusing_encoders_are_passed_over() -> None:
    fleet = [encoder("drained", "h1", draining=True), encoder("full", "h1", capacity=1, active=1),
             encoder("refused", "h1")]
    assert place(fleet, host="h1", choice="auto", stream_id="cam1", exclude={"refused"}) == Unplaced(
        "every encoder known is busy (1 full, 1 draining, 1 just refused it); waiting for room")
    assert place([], host="h1", choice="auto", stream_id="cam1") == Unplaced("no encoder is running; waiting for one")


def test_streams_started_together_spread_over_equal_encoders() -> None:
    counts = shares([encoder(f"enc{n}", "h2") for n in range(4)], streams=400, host="h1", choice="auto")
    assert set(counts) == {"enc0", "enc1", "enc2", "enc3"} and min(counts.values()) > 60


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_fleet_forgets_an_encoder_three_heartbeats_after_its_last() -> None:
    clock = Clock()
    fleet = Fleet(fresh_s=1.5, clock=clock)
    fleet.heard(encoder("a", "h1"))
    clock.now += 1.4
    assert [e.encoder_id for e in fleet.alive()] == ["a"]
    clock.now += 0.2
    assert fleet.alive() == [] and fleet.silent_for("a") == pytest.approx(1.6)
    assert fleet.silent_for("never") == float("inf")
    fleet.claimed_by("b")  # answered a claim before its first heartbeat: alive, not placeable
    assert fleet.silent_for("b") == 0 and fleet.alive() == []

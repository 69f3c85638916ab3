"""``python -m bench.simulate``: a day of stream churn and viewer joins against the real placement.

Why: docs/scaling.md sizes an encoder fleet from per-stream costs; whether placement spreads a
day's churn over that fleet - how even the load stays, how many streams travel over NATS, what a
lost host or a drain moves and how long streams go unencoded - is a question about
``framecast.capture.placement``, not about CPU. This replays such a day on a simulated clock
against the real ``place()`` and ``Fleet`` (imported, not copied); the encoder's refusal rules
mirror ``EncoderService.on_announce``, and the timings (heartbeat interval, the producer's
heartbeat timeout, poll and retry intervals) are imported from the services. No process,
socket or sleep: a day takes seconds.

Modelled: encoders heartbeating every ``heartbeat_s`` with their state at that tick (so a
producer's view is up to one heartbeat old, except that a starting producer's ping makes every
encoder answer at once); a claim refused by a full, draining, out-of-sessions or vanished
encoder, and the producer placing again at once without it; a lost host noticed by each of its
producers when its heartbeats are older than the timeout, at the producer's next poll; a drain
handing each stream over while the draining encoder stays on air; streams waiting for room
retrying every ``ANNOUNCE_RETRY_S``. Not modelled: claim round trips and FFmpeg start-up (zero
here), encoder CPU (an encoder is its slot count), NATS or MediaMTX outages. Viewers are a load
model on a one-minute step (joins by Poisson arrivals spread over on-air streams by a Zipf
popularity, exponential watch times), not sessions: they give joins/s, hook decisions and
MediaMTX load through docs/scaling.md's figures (``bench.model``).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import os
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from framecast.capture.placement import Fleet, Unplaced, place
from framecast.capture.producer import ANNOUNCE_RETRY_S, HEARTBEAT_TIMEOUT_S
from framecast.encoder.settings import EncoderSettings
from framecast.proto.messages import EncoderHeartbeat

from . import model, report

GROUP = "simulate"
HEARTBEAT_S = EncoderSettings().heartbeat_s
POLL_S = HEARTBEAT_TIMEOUT_S / 5
"""How often a producer with an encoder checks that encoder's heartbeat (producer._keep_claimed)."""
SAMPLE_S = 60.0
BUCKETS = 24


@dataclass(frozen=True, slots=True)
class Scenario:
    """The simulated fleet and day; every default is a choice, printed with the results."""

    hours: float = 24.0
    """Simulated time; a shorter run compresses the same day (the diurnal pattern, sessions, fleet events)."""
    encoder_hosts: int = 20
    gpu_hosts: int = 4
    """Hosts that also run an NVENC encoder of ``hw_sessions`` sessions (a consumer card)."""
    cores: int = 4
    """Cores per encoder host for libx264; its slots come from docs/scaling.md (``bench.model``)."""
    size: str = "640x360"
    hw_sessions: int = 8
    nvenc_max_streams: int = 0
    """The NVENC encoder's FRAMECAST_MAX_STREAMS; 0: its sessions. More than its sessions, and it
    refuses streams it has slots for (``on_announce``: no hardware sessions left)."""
    cameras: int = 800
    colocated: float = 0.25
    """Share of cameras whose producer runs on an encoder host (shared memory possible)."""
    cameras_per_host: int = 12
    """Cameras per camera-only host."""
    always_on: float = 0.2
    """Share of cameras on all day; the others come and go with the time of day."""
    session_min: float = 40.0
    """Mean minutes a camera stays on (scaled with ``hours``)."""
    viewers: int = 8_000
    """Concurrent viewers at the busiest time of day."""
    watch_s: float = 300.0
    zipf: float = 1.1
    seed: int = 1

    @property
    def slots(self) -> int:
        return math.floor(self.cores * model.streams_per_core(self.size))

    @property
    def duration_s(self) -> float:
        return self.hours * 3600


QUICK = Scenario(hours=2.0, encoder_hosts=4, gpu_hosts=1, cores=1, cameras=40, cameras_per_host=8, viewers=400)


PEAK_HOUR = 14.0


def on_probability(hour: float) -> float:
    """Chance that a camera that comes and goes is on at ``hour`` (lowest at 02:00, highest at 14:00)."""
    return 0.30 + 0.55 * (1 - math.cos(2 * math.pi * (hour - PEAK_HOUR + 12) / 24)) / 2


@dataclass(slots=True)
class Encoder:
    encoder_id: str
    host: str
    capacity: int
    hw_sessions: int | None
    alive: bool = True
    draining: bool = False
    streams: set[str] = field(default_factory=set)
    phase: float = 0.0
    """Its heartbeats tick at ``phase + k * HEARTBEAT_S``."""
    last_beat: float = -math.inf

    @property
    def hw_sessions_left(self) -> int | None:
        return None if self.hw_sessions is None else max(self.hw_sessions - len(self.streams), 0)

    def refusal(self) -> str | None:
        """Why the encoder refuses a claim now: the order of ``EncoderService.on_announce``."""
        if self.draining:
            return "draining"
        if len(self.streams) >= self.capacity:
            return "at capacity (filled since its heartbeat)"
        if self.hw_sessions_left == 0:
            return "no hardware sessions left"
        return None

    def heartbeat(self) -> EncoderHeartbeat:
        return EncoderHeartbeat(encoder_id=self.encoder_id, streams=sorted(self.streams), capacity=self.capacity,
                                active=len(self.streams), hw_sessions_left=self.hw_sessions_left, at=0.0,
                                host=self.host, draining=self.draining)


@dataclass(slots=True)
class Move:
    """One fleet event that moved streams: a lost host, a drain."""

    kind: str
    at: float
    what: str
    streams: int = 0
    viewers: int = 0
    to_shm: int = 0
    to_nats: int = 0
    waits: list[float] = field(default_factory=list)
    ended_first: int = 0
    producers_lost: int = 0
    """Streams whose producer ran on the lost host: they fail with it and start again when it is back."""
    targets: Counter[str] = field(default_factory=Counter)
    """Where the moved streams landed: encoder id -> streams."""


@dataclass(slots=True)
class Stream:
    stream_id: str
    index: int
    host: str
    always_on: bool
    wanted: bool = False
    encoder: str = ""
    transport: str = ""
    claimed: bool = False
    """Past ``requested``: some encoder has claimed it since it started."""
    handing_over: bool = False
    """On a draining encoder, still on air, waiting for another to claim it."""
    refused: dict[str, float] = field(default_factory=dict)
    lost_at: float | None = None
    """Wanted but encoded by no one since then."""
    wait_kind: str = ""
    reason: str = ""
    move: Move | None = None
    gen: int = 0
    retry_token: int = 0
    start_when_up: bool = False
    """Its host is down: it starts again when the host is back."""


class Simulation:
    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.rng = random.Random(sc.seed)
        self.np_rng = np.random.default_rng(sc.seed)
        self.now = 0.0
        self._clock = 0.0
        self.fleet = Fleet(clock=lambda: self._clock)
        self._queue: list[tuple[float, int, str, tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self.encoders: dict[str, Encoder] = {}
        self.hosts: dict[str, list[Encoder]] = {}
        for i in range(1, sc.encoder_hosts + 1):
            self._add_host(f"enc-host-{i:02d}", gpu=i <= sc.gpu_hosts)
        self.streams = self._cameras()
        self.by_id = {s.stream_id: s for s in self.streams}
        ranks = np.arange(1, sc.cameras + 1, dtype=float)
        self.np_rng.shuffle(ranks)
        self.popularity = ranks ** -sc.zipf
        self.viewers = np.zeros(sc.cameras, dtype=np.int64)
        self.refusals: Counter[str] = Counter()
        self.placements: Counter[str] = Counter()
        self.waits: dict[str, list[float]] = {"start": [], "failover": [], "drain": []}
        self.unplaced_s = 0.0
        self.moves: list[Move] = []
        self.down: set[str] = set()
        self.transitions: Counter[str] = Counter()
        self.kv_updates = 0
        self.writes_by_minute: Counter[int] = Counter()
        self.samples: list[dict[str, Any]] = []

    # ----- set-up ---------------------------------------------------------------------------------

    def _add_host(self, host: str, *, gpu: bool) -> None:
        name = host.removeprefix("enc-host-")
        encoders = [Encoder(f"enc-{name}-x264", host, self.sc.slots, None)]
        if gpu:
            encoders.append(Encoder(f"enc-{name}-nvenc", host, self.sc.nvenc_max_streams or self.sc.hw_sessions,
                                    self.sc.hw_sessions))
        self.hosts[host] = encoders
        for enc in encoders:
            self.encoders[enc.encoder_id] = enc

    def _cameras(self) -> list[Stream]:
        sc = self.sc
        colocated = round(sc.cameras * sc.colocated)
        encoder_hosts = list(self.hosts)
        camera_hosts = [f"cam-host-{i:03d}" for i in range(1, max(1, math.ceil((sc.cameras - colocated)
                                                                                 / sc.cameras_per_host)) + 1)]
        streams = []
        for i in range(sc.cameras):
            host = encoder_hosts[i % len(encoder_hosts)] if i < colocated else camera_hosts[(i - colocated)
                                                                                            % len(camera_hosts)]
            streams.append(Stream(f"cam{i:05d}", i, host, always_on=self.rng.random() < sc.always_on))
        return streams

    def hour(self, t: float | None = None) -> float:
        return 24 * (self.now if t is None else t) / self.sc.duration_s

    def _at(self, t: float, kind: str, *args: Any) -> None:
        heapq.heappush(self._queue, (t, next(self._seq), kind, args))

    # ----- the run ----------------------------------------------------------------------------------

    def run(self) -> None:
        sc, scale = self.sc, self.sc.duration_s / 86_400
        for enc in self.encoders.values():
            enc.phase = self.rng.uniform(0, HEARTBEAT_S)
            self._beat(enc)
        for s in self.streams:
            if s.always_on or self.rng.random() < on_probability(0):
                self._at(self.rng.uniform(0, 60 * scale), "start", s.stream_id)
            else:
                self._at(self._off_time(0), "start", s.stream_id)
        hosts = list(self.hosts)
        gpu = hosts[1 if sc.gpu_hosts > 1 else 0] if sc.gpu_hosts else hosts[-1]
        lost_first = next(h for h in reversed(hosts[:7]) if h != gpu)
        drained = next(e for h in reversed(hosts[:5]) if h not in (gpu, lost_first)
                       for e in self.hosts[h] if e.hw_sessions is None)
        hour, off_grid = 3600 * scale, 17.0  # not on a sample's minute
        self._at(3 * hour + off_grid, "host_down", lost_first, 40 * 60 * scale)
        self._at(9 * hour + off_grid, "host_join")
        self._at(11 * hour + off_grid, "drain", drained.encoder_id, 20 * 60 * scale)
        self._at(14 * hour + off_grid, "host_down", gpu, 30 * 60 * scale)
        t = 0.0
        while t < sc.duration_s:
            self._at(t, "sample")
            t += SAMPLE_S
        while self._queue:
            t, _, kind, args = heapq.heappop(self._queue)
            if t >= sc.duration_s:
                break
            self.now = self._clock = t
            self._catch_up()
            getattr(self, f"_on_{kind}")(*args)
        self.now = self._clock = sc.duration_s
        for s in self.streams:
            if s.lost_at is not None:
                self.unplaced_s += self.now - s.lost_at

    def _off_time(self, t: float) -> float:
        p = on_probability(self.hour(t))
        on_mean = self.sc.session_min * 60 * self.sc.duration_s / 86_400
        return t + self.rng.expovariate(1 / (on_mean * (1 - p) / p))

    # ----- heartbeats -------------------------------------------------------------------------------

    def _beat(self, enc: Encoder, at: float | None = None) -> None:
        """``enc`` heartbeats at ``at`` (default now) with its current state."""
        at = self.now if at is None else at
        self._clock = at
        self.fleet.heard(enc.heartbeat())
        self._clock = self.now
        enc.last_beat = at

    def _catch_up(self) -> None:
        """Every heartbeat tick since the last event: state only changes at events, so the state
        now is the state at those ticks."""
        for enc in self.encoders.values():
            if enc.alive:
                tick = enc.phase + math.floor((self.now - enc.phase) / HEARTBEAT_S) * HEARTBEAT_S
                if tick > enc.last_beat:
                    self._beat(enc, tick)

    # ----- the bus ----------------------------------------------------------------------------------

    def _transition(self, *states: str) -> None:
        for state in states:
            self.transitions[state] += 1
        self.writes_by_minute[int(self.now // SAMPLE_S)] += model.WRITES_PER_TRANSITION.value * len(states)

    # ----- streams ----------------------------------------------------------------------------------

    def _on_start(self, stream_id: str) -> None:
        s = self.by_id[stream_id]
        if s.host in self.down:
            s.start_when_up = True
            return
        s.wanted, s.claimed, s.gen, s.refused, s.reason = True, False, s.gen + 1, {}, ""
        s.lost_at, s.wait_kind, s.move = self.now, "start", None
        self._transition("requested")
        for enc in self.encoders.values():  # the producer's ping: every encoder answers now
            if enc.alive:
                self._beat(enc)
        self._place(s)
        if not s.always_on:
            on_mean = self.sc.session_min * 60 * self.sc.duration_s / 86_400
            self._at(self.now + self.rng.expovariate(1 / on_mean), "stop", stream_id, s.gen)

    def _on_stop(self, stream_id: str, gen: int) -> None:
        s = self.by_id[stream_id]
        if s.gen != gen:
            return
        if s.encoder:
            self.encoders[s.encoder].streams.discard(stream_id)
        if s.lost_at is not None:
            self.unplaced_s += self.now - s.lost_at
            if s.move is not None:
                s.move.ended_first += 1
        s.wanted, s.encoder, s.transport, s.lost_at, s.move, s.handing_over = False, "", "", None, None, False
        s.gen += 1
        self.viewers[s.index] = 0
        self._transition("stopping", "stopped")
        self._at(self._off_time(self.now), "start", stream_id)

    def _place(self, s: Stream) -> None:
        """What ``Producer._announce`` does, with the real ``place()`` and the producer's view."""
        while True:
            s.refused = {eid: at for eid, at in s.refused.items() if self.now - at < self.fleet.fresh_s}
            alive = self.fleet.alive()
            placement = place(alive, host=s.host, choice="auto", stream_id=s.stream_id, exclude=s.refused)
            if isinstance(placement, Unplaced):
                self._wait(s, placement.reason)
                return
            enc = self.encoders[placement.encoder_id]
            why = "gone (no responders)" if not enc.alive else enc.refusal()
            if why is None:
                self._claim(s, enc, placement.transport)
                return
            self.refusals[why] += 1
            s.refused[enc.encoder_id] = self.now

    def _wait(self, s: Stream, reason: str) -> None:
        if not s.claimed and reason != s.reason:  # Producer._waiting writes the reason while requested
            s.reason = reason
            self.kv_updates += 1
            self.writes_by_minute[int(self.now // SAMPLE_S)] += 1
        s.retry_token += 1
        self._at(self.now + ANNOUNCE_RETRY_S, "retry", s.stream_id, s.retry_token)

    def _claim(self, s: Stream, enc: Encoder, transport: str) -> None:
        if s.encoder and s.encoder != enc.encoder_id:  # a hand-over: the draining encoder lets go
            self.encoders[s.encoder].streams.discard(s.stream_id)
        enc.streams.add(s.stream_id)
        self.fleet.claimed_by(enc.encoder_id)
        local = [e for e in self.hosts.get(s.host, ()) if e.alive]
        kind = "shm" if transport == "shm" else ("nats, local encoders full or draining" if local
                                                 else "nats, no encoder on its host")
        self.placements[kind] += 1
        if enc.hw_sessions is not None:
            self.placements["on NVENC"] += 1
        s.encoder, s.transport, s.handing_over = enc.encoder_id, transport, False
        s.claimed = True
        s.retry_token += 1
        self._transition("starting", "publishing", "live")
        if s.lost_at is not None:
            waited = self.now - s.lost_at
            self.unplaced_s += waited
            self.waits[s.wait_kind].append(waited)
            if s.move is not None:
                s.move.waits.append(waited)
        if s.move is not None:
            s.move.to_shm += transport == "shm"
            s.move.to_nats += transport == "nats"
            s.move.targets[enc.encoder_id] += 1
        s.lost_at, s.move = None, None

    def _on_retry(self, stream_id: str, token: int) -> None:
        s = self.by_id[stream_id]
        if s.wanted and token == s.retry_token and (not s.encoder or s.handing_over):
            self._place(s)

    # ----- the fleet --------------------------------------------------------------------------------

    def _lose(self, enc: Encoder, move: Move) -> None:
        """``enc`` is gone: each of its producers notices at its first poll after the timeout."""
        for stream_id in sorted(enc.streams):
            s = self.by_id[stream_id]
            s.encoder, s.transport, s.handing_over = "", "", False
            s.lost_at, s.wait_kind, s.move, s.gen = self.now, "failover", move, s.gen + 1
            move.streams += 1
            move.viewers += int(self.viewers[s.index])
            noticed = max(self.now, enc.last_beat + HEARTBEAT_TIMEOUT_S) + self.rng.uniform(0, POLL_S)
            self._at(noticed, "notice", stream_id, s.gen, enc.encoder_id)
        enc.streams.clear()
        enc.alive = False

    def _on_host_down(self, host: str, down_s: float) -> None:
        move = Move("host lost", self.now, host)
        self.moves.append(move)
        self.down.add(host)
        for s in self.streams:  # producers on the host go with it: their streams stall, then fail
            if s.host == host and s.wanted:
                if s.encoder:
                    self.encoders[s.encoder].streams.discard(s.stream_id)
                if s.lost_at is not None:
                    self.unplaced_s += self.now - s.lost_at
                s.wanted, s.encoder, s.transport, s.lost_at, s.move, s.handing_over = False, "", "", None, None, False
                s.gen, s.start_when_up = s.gen + 1, True
                self.viewers[s.index] = 0
                move.producers_lost += 1
                self._transition("stalled", "failed")
        for enc in self.hosts[host]:
            self._lose(enc, move)
        self._at(self.now + down_s, "host_up", host)

    def _on_notice(self, stream_id: str, gen: int, encoder_id: str) -> None:
        s = self.by_id[stream_id]
        if s.gen != gen or not s.wanted:
            return
        if self.fleet.silent_for(encoder_id) <= HEARTBEAT_TIMEOUT_S:
            self._at(self.now + POLL_S, "notice", stream_id, gen, encoder_id)
            return
        s.refused[encoder_id] = self.now
        self._transition("stalled")  # the reconciler sees MediaMTX lose the path
        self._place(s)

    def _on_host_up(self, host: str) -> None:
        self.down.discard(host)
        for enc in self.hosts[host]:
            enc.alive, enc.draining, enc.phase = True, False, self.now
            self._beat(enc)
        for s in self.streams:
            if s.host == host and s.start_when_up:
                s.start_when_up = False
                self._on_start(s.stream_id)

    def _on_host_join(self) -> None:
        host = f"enc-host-{len(self.hosts) + 1:02d}"
        self._add_host(host, gpu=False)
        self.moves.append(Move("host joined", self.now, host))
        for enc in self.hosts[host]:
            enc.phase = self.now
            self._beat(enc)

    def _on_drain(self, encoder_id: str, restart_after_s: float) -> None:
        enc = self.encoders[encoder_id]
        move = Move("drain", self.now, encoder_id)
        self.moves.append(move)
        enc.draining = True
        self._beat(enc)
        for stream_id in sorted(enc.streams):  # Reassign: the producer places it again, excluding enc
            s = self.by_id[stream_id]
            s.refused[encoder_id] = self.now
            s.handing_over, s.move, s.wait_kind = True, move, "drain"
            move.streams += 1
            move.viewers += int(self.viewers[s.index])
            self._place(s)
        self._at(self.now + restart_after_s, "restart", encoder_id)

    def _on_restart(self, encoder_id: str) -> None:
        """The operator restarts the drained encoder; streams it still holds are lost with it."""
        enc = self.encoders[encoder_id]
        if enc.streams:
            move = Move("restart after drain", self.now, encoder_id)
            self.moves.append(move)
            self._lose(enc, move)
        enc.alive, enc.draining, enc.phase = True, False, self.now
        self._beat(enc)

    # ----- samples ----------------------------------------------------------------------------------

    def _on_sample(self) -> None:
        sc = self.sc
        alive = [e for e in self.encoders.values() if e.alive]
        # balance among the libx264 encoders (one slot count); NVENC encoders fill first by design
        active = [len(e.streams) for e in alive if e.hw_sessions is None and not e.draining]
        mean = statistics.fmean(active) if active else 0.0
        encoded = [s for s in self.streams if s.encoder]
        on_air = np.zeros(sc.cameras, dtype=bool)
        on_air[[s.index for s in encoded]] = True
        wanted = np.array([s.wanted for s in self.streams])
        nats = [s for s in encoded if s.transport == "nats"]
        avoidable = sum(1 for s in nats if any(e.alive and not e.draining and len(e.streams) < e.capacity
                                               and e.hw_sessions_left != 0 for e in self.hosts.get(s.host, ())))
        # viewers: those of a stream that ended are gone; the rest leave at random and new ones join
        self.viewers[~wanted] = 0
        self.viewers -= self.np_rng.binomial(self.viewers, 1 - math.exp(-SAMPLE_S / sc.watch_s))
        joins_per_s = sc.viewers / sc.watch_s * self._on_share(self.hour()) / self._on_share(PEAK_HOUR)
        joined = 0
        if on_air.any():
            weights = self.popularity * on_air
            arrivals = self.np_rng.poisson(joins_per_s * SAMPLE_S * weights / weights.sum())
            self.viewers += arrivals
            joined = int(arrivals.sum())
        self.samples.append({
            "t": self.now,
            "encoders": len(alive),
            "wanted": int(wanted.sum()),
            "encoded": len(encoded),
            "mean": mean,
            "max": max(active, default=0),
            "stddev": statistics.pstdev(active) if active else 0.0,
            "max_util": max(active, default=0) / sc.slots,
            "shm": len(encoded) - len(nats),
            "nats": len(nats),
            "avoidable_nats": avoidable,
            "nvenc": sum(len(e.streams) for e in alive if e.hw_sessions is not None),
            "viewers": int(self.viewers.sum()),
            "joins_per_s": joined / SAMPLE_S,
            "watched": int((self.viewers > 0).sum()),
            "top_stream": int(self.viewers.max()),
        })

    def _on_share(self, hour: float) -> float:
        """Share of cameras on at ``hour``: viewers come and go with it."""
        return self.sc.always_on + (1 - self.sc.always_on) * on_probability(hour)


# ----- results ------------------------------------------------------------------------------------

def summarise(sim: Simulation) -> dict[str, Any]:
    sc, samples = sim.sc, sim.samples
    size = model.SIZES[sc.size]
    buckets: list[list[dict[str, Any]]] = [[] for _ in range(BUCKETS)]
    for sample in samples:
        buckets[min(BUCKETS - 1, int(BUCKETS * sample["t"] / sc.duration_s))].append(sample)
    hours = []
    for i, rows in enumerate(buckets):
        if not rows:
            continue
        mean = statistics.fmean(r["mean"] for r in rows)
        encoded = sum(r["encoded"] for r in rows)
        hours.append({
            "time_of_day": f"{i * 24 // BUCKETS:02d}:00",
            "encoders": max(r["encoders"] for r in rows),
            "streams": statistics.fmean(r["encoded"] for r in rows),
            "unencoded": max(r["wanted"] - r["encoded"] for r in rows),
            "mean_active": mean,
            "max_active": max(r["max"] for r in rows),
            "max_over_mean": max(r["max"] / r["mean"] if r["mean"] else 0.0 for r in rows),
            "stddev": statistics.fmean(r["stddev"] for r in rows),
            "max_utilisation": max(r["max_util"] for r in rows),
            "shm_share": sum(r["shm"] for r in rows) / encoded if encoded else float("nan"),
            "avoidable_nats": max(r["avoidable_nats"] for r in rows),
            "nvenc": max(r["nvenc"] for r in rows),
            "viewers": max(r["viewers"] for r in rows),
            "joins_per_s": max(r["joins_per_s"] for r in rows),
        })
    stream_minutes = sum(r["encoded"] for r in samples)
    busiest = max(samples, key=lambda r: r["viewers"])
    peak_nats = max(r["nats"] for r in samples)
    starts = sim.transitions["requested"]
    start_waits = sim.waits["start"]
    writes = sum(sim.transitions.values()) * model.WRITES_PER_TRANSITION.value + sim.kv_updates
    placement = {
        "placements": dict(sim.placements),
        "starts": starts,
        "shm_share_of_stream_time": sum(r["shm"] for r in samples) / stream_minutes if stream_minutes else 0.0,
        "nats_share_of_stream_time": sum(r["nats"] for r in samples) / stream_minutes if stream_minutes else 0.0,
        "avoidable_nats_share": sum(r["avoidable_nats"] for r in samples) / stream_minutes if stream_minutes else 0.0,
        "nvenc_share_of_stream_time": sum(r["nvenc"] for r in samples) / stream_minutes if stream_minutes else 0.0,
        "peak_nats_streams": peak_nats,
        "peak_nats_raw_gbps": peak_nats * model.raw_mbps(sc.size) / 1000,
        "peak_nats_cores": peak_nats * model.nats_cores(sc.size),
        "refusals": dict(sim.refusals),
        "starts_that_waited": sum(w > 0 for w in start_waits),
        "start_wait_p95_s": report.percentile(start_waits, 95),
        "start_wait_max_s": max(start_waits, default=0.0),
        "unplaced_stream_s": sim.unplaced_s,
        "unplaced_share_of_stream_time": sim.unplaced_s / (stream_minutes * SAMPLE_S) if stream_minutes else 0.0,
    }
    moves = [{
        "event": m.kind, "at": f"{int(24 * m.at / sc.duration_s):02d}:{int(1440 * m.at / sc.duration_s) % 60:02d}",
        "what": m.what, "producers_lost": m.producers_lost, "streams_moved": m.streams, "viewers_watching": m.viewers, "to_shm": m.to_shm,
        "to_nats": m.to_nats, "encoders_taking_them": len(m.targets),
        "most_to_one_encoder": max(m.targets.values(), default=0), "unencoded_p50_s": report.median(m.waits), "unencoded_max_s": max(m.waits, default=0.0),
        "ended_before_placed": m.ended_first,
    } for m in sim.moves]
    viewers = {
        "peak_concurrent": busiest["viewers"],
        "peak_joins_per_s": max(r["joins_per_s"] for r in samples),
        "hook_decisions_per_s": max(r["joins_per_s"] for r in samples) * model.HOOK_CALLS_PER_JOIN.value,
        "auth_cores_at_peak": max(r["joins_per_s"] for r in samples) * 458e-6,
        "playback_requests_per_s": max(r["joins_per_s"] for r in samples)
        + busiest["viewers"] / model.PLAYER_RENEW_S.value,
        "streams_watched_at_peak": busiest["watched"],
        "most_watched_stream": max(r["top_stream"] for r in samples),
        "mediamtx_cores_at_peak": busiest["viewers"] * size["webrtc"].value + busiest["encoded"] * model.INGEST.value,
        "egress_gbps_at_peak": busiest["viewers"] * size["kbps"].value / 1e6,
    }
    bus = {
        "transitions": dict(sim.transitions),
        "kv_only_updates": sim.kv_updates,
        "jetstream_writes": writes,
        "jetstream_writes_per_start": writes / starts if starts else 0.0,
        "peak_writes_per_s_minute_mean": max(sim.writes_by_minute.values(), default=0) / SAMPLE_S,
        "mean_writes_per_s": writes / sc.duration_s,
    }
    return {"hours": hours, "placement": placement, "moves": moves, "viewers": viewers, "bus": bus}


def render(sc: Scenario, result: dict[str, Any]) -> str:
    p, v, b = result["placement"], result["viewers"], result["bus"]
    nvenc = sc.nvenc_max_streams or sc.hw_sessions
    slots = sc.encoder_hosts * sc.slots + sc.gpu_hosts * min(nvenc, sc.hw_sessions)
    out = [
        f"Scenario: {sc.hours:g} h, seed {sc.seed}; {sc.encoder_hosts} encoder hosts x {sc.slots} libx264 slots "
        f"({sc.cores} cores, {sc.size}@30, docs/scaling.md), {sc.gpu_hosts} of them also an NVENC encoder "
        f"({sc.hw_sessions} sessions, max {nvenc} streams): {slots} slots; {sc.cameras} cameras, "
        f"{sc.colocated:.0%} on encoder hosts, {sc.always_on:.0%} on all day; {sc.viewers:,} viewers at 14:00. "
        "Fleet events (a host lost at 03:00 and at 14:00, one joining at 09:00, a drain at 11:00) in Moves",
        "",
        report.table(
            ["time of day", "encoders alive", "streams", "unencoded (max)", "mean active", "max active", "max/mean",
             "stddev", "max busy", "shm share", "avoidable NATS", "on NVENC", "viewers", "joins/s"],
            [[h["time_of_day"], h["encoders"], h["streams"], h["unencoded"], h["mean_active"], h["max_active"],
              h["max_over_mean"], h["stddev"], f"{h['max_utilisation']:.0%}", f"{h['shm_share']:.0%}",
              h["avoidable_nats"], h["nvenc"], h["viewers"], h["joins_per_s"]] for h in result["hours"]],
            title=("Encoder load over the day: streams per libx264 encoder (alive, not draining; 'max busy' of its "
                   "slots), per hour of the simulated day: max = the worst minute, otherwise the mean of its minutes"),
        ),
        "",
        report.table(["placement", "figure"], [
            ["stream starts", p["starts"]],
            ["placements: shared memory", p["placements"].get("shm", 0)],
            ["placements: NATS, no encoder on its host", p["placements"].get("nats, no encoder on its host", 0)],
            ["placements: NATS, local encoders full or draining",
             p["placements"].get("nats, local encoders full or draining", 0)],
            ["placements on NVENC", p["placements"].get("on NVENC", 0)],
            ["stream time on shared memory", f"{p['shm_share_of_stream_time']:.1%}"],
            ["stream time on NATS", f"{p['nats_share_of_stream_time']:.1%}"],
            ["... of which a local encoder had room by then", f"{p['avoidable_nats_share']:.1%}"],
            ["stream time on NVENC", f"{p['nvenc_share_of_stream_time']:.1%}"],
            ["peak streams on NATS (raw Gbit/s, cores, docs/scaling.md)",
             f"{p['peak_nats_streams']} ({p['peak_nats_raw_gbps']:.1f} Gbit/s, {p['peak_nats_cores']:.1f} cores)"],
            *[[f"refusals: {why}", n] for why, n in sorted(p["refusals"].items())],
            ["refusals", sum(p["refusals"].values())],
            ["starts that waited for room", p["starts_that_waited"]],
            ["start wait p95 / max, s", f"{p['start_wait_p95_s']:.2f} / {p['start_wait_max_s']:.2f}"],
            ["unencoded stream-seconds (share of stream time)",
             f"{p['unplaced_stream_s']:,.0f} ({p['unplaced_share_of_stream_time']:.4%})"],
        ], title="Placement"),
        "",
        report.table(
            ["event", "at", "what", "producers lost", "streams moved", "viewers watching", "to shm", "to NATS", "encoders taking them",
             "most to one", "unencoded p50 s", "unencoded max s", "ended before placed"],
            [[m["event"], m["at"], m["what"], m["producers_lost"], m["streams_moved"], m["viewers_watching"], m["to_shm"], m["to_nats"],
              m["encoders_taking_them"], m["most_to_one_encoder"], m["unencoded_p50_s"], m["unencoded_max_s"],
              m["ended_before_placed"]] for m in result["moves"]],
            title="Moves (a drain hands over with no gap: its streams stay on air until claimed elsewhere)",
        ),
        "",
        report.table(["viewers (load model, docs/scaling.md figures)", "figure"], [
            ["peak concurrent viewers", v["peak_concurrent"]],
            ["peak joins/s (minute mean)", v["peak_joins_per_s"]],
            ["hook decisions/s at peak (one per join)", v["hook_decisions_per_s"]],
            ["auth cores at peak (458 us per decision)", v["auth_cores_at_peak"]],
            ["gateway playback requests/s at peak (joins + renewals)", v["playback_requests_per_s"]],
            ["streams watched at peak", v["streams_watched_at_peak"]],
            ["most viewers of one stream", v["most_watched_stream"]],
            ["MediaMTX cores at peak (WebRTC + ingest)", v["mediamtx_cores_at_peak"]],
            ["MediaMTX egress at peak, Gbit/s", v["egress_gbps_at_peak"]],
        ], title="Viewers"),
        "",
        report.table(["JetStream (counted as the code writes)", "figure"], [
            *[[f"transitions: {state}", n] for state, n in sorted(b["transitions"].items())],
            ["KV-only updates (a waiting stream's reason)", b["kv_only_updates"]],
            ["JetStream writes (2 per transition + KV-only)", b["jetstream_writes"]],
            ["writes per stream start", b["jetstream_writes_per_start"]],
            ["writes/s: mean / busiest minute", f"{b['mean_writes_per_s']:.2f} / {b['peak_writes_per_s_minute_mean']:.2f}"],
        ], title="Bus"),
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.simulate",
        description="A day of stream churn, fleet events and viewer joins against framecast's real encoder "
                    "placement, on a simulated clock; and the capacity model of docs/scaling.md.",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run (2 simulated hours, 4 hosts, 40 cameras)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--hours", type=float, default=None, help="simulated hours (default 24; 2 with --quick)")
    parser.add_argument("--hosts", type=int, default=None, metavar="N", help="encoder hosts")
    parser.add_argument("--gpu-hosts", type=int, default=None, metavar="N", help="of which with NVENC")
    parser.add_argument("--cameras", type=int, default=None, metavar="N")
    parser.add_argument("--viewers", type=int, default=None, metavar="M", help="concurrent viewers at the peak")
    parser.add_argument("--nvenc-max-streams", type=int, default=None, metavar="N",
                        help="FRAMECAST_MAX_STREAMS of each NVENC encoder (default: its 8 sessions)")
    parser.add_argument("--results", type=Path, default=None, metavar="DIR",
                        help=f"where {GROUP}.json is written (default: bench/results; a --quick run writes "
                             "nothing unless this is given)")
    parser.add_argument("--no-save", action="store_true", help="print only; write no JSON")
    args = parser.parse_args(argv)
    sc = replace(QUICK if args.quick else Scenario(), seed=args.seed)
    for name, value in (("hours", args.hours), ("encoder_hosts", args.hosts), ("gpu_hosts", args.gpu_hosts),
                        ("cameras", args.cameras), ("viewers", args.viewers),
                        ("nvenc_max_streams", args.nvenc_max_streams)):
        if value is not None:
            sc = replace(sc, **{name: value})
    if sc.hours <= 0 or sc.encoder_hosts < 3 or not 0 <= sc.gpu_hosts <= sc.encoder_hosts or sc.cameras < 1:
        parser.error("need hours > 0, at least 3 encoder hosts, 0 <= gpu hosts <= hosts, at least one camera")
    began = time.monotonic()
    env = report.environment()
    print(f"environment: {report.describe(env)}", flush=True)
    model_text, model_rows = model.table()
    sim = Simulation(sc)
    sim.run()
    result = summarise(sim)
    text = f"{model_text}\n\n{render(sc, result)}"
    print(f"\n{text}\n", flush=True)
    result.update(scenario={**{f: getattr(sc, f) for f in sc.__dataclass_fields__}, "slots_per_host": sc.slots},
                  model=model_rows, table=text, environment=env, elapsed_s=time.monotonic() - began,
                  quick=args.quick, load_average_after=os.getloadavg())
    report.save_standalone(GROUP, result, quick=args.quick, results=args.results, no_save=args.no_save)
    return 0


if __name__ == "__main__":
    sys.exit(main())

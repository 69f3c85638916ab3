"""The gateway's OpenTelemetry instruments, made once per process on first use."""

from __future__ import annotations

import collections
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import metrics

from framecast.proto.states import StreamState
from framecast.runtime.telemetry import instruments

if TYPE_CHECKING:
    from .events import StateView

__all__ = ["GatewayInstruments", "gateway_instruments"]


@dataclass(frozen=True)
class GatewayInstruments:
    playbacks: metrics.Counter
    event_streams: metrics.UpDownCounter
    views: weakref.WeakSet[StateView]
    """The live state views whose streams ``framecast.gateway.streams`` counts."""


def _create(meter: metrics.Meter) -> GatewayInstruments:
    views: weakref.WeakSet[StateView] = weakref.WeakSet()

    def observe_states(_options: object) -> list[metrics.Observation]:
        counts: collections.Counter[str] = collections.Counter()
        for view in list(views):
            counts.update(record.state.value for record in view.records.values())
        return [metrics.Observation(counts[state.value], {"state": state.value}) for state in StreamState]

    meter.create_observable_gauge("framecast.gateway.streams", [observe_states], unit="{stream}",
                                  description="streams in each lifecycle state, as the gateway sees them")
    return GatewayInstruments(
        playbacks=meter.create_counter("framecast.gateway.playbacks", unit="{token}",
                                       description="playback URLs and viewer tokens handed out"),
        event_streams=meter.create_up_down_counter("framecast.gateway.event_streams", unit="{connection}",
                                                   description="open server-sent event streams"),
        views=views,
    )


gateway_instruments = instruments("framecast.gateway", _create)

"""The encoder's OpenTelemetry instruments, made once per process on first use.

The gauges report every live encoder service of the process (one in production, several in
tests): each service adds itself to ``services``, a weak set, so a finished one drops out.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import metrics

from framecast.runtime.telemetry import instruments

if TYPE_CHECKING:
    from .service import EncoderService

__all__ = ["EncoderInstruments", "encoder_instruments"]

#: Gauge name suffix, unit, and the field of a stream's latest ``StreamStats`` it reports.
STREAM_GAUGES = (("fps_out", "{frame}/s", "fps_out"), ("fps_in", "{frame}/s", "fps_in"),
                 ("bitrate", "kbit/s", "bitrate_kbps"), ("speed", "1", "speed"),
                 ("restarts", "{restart}", "restarts"))


@dataclass(frozen=True)
class EncoderInstruments:
    frames: metrics.Counter
    dropped: metrics.Counter
    services: weakref.WeakSet[EncoderService]
    """The live encoder services the gauges report."""


def _create(meter: metrics.Meter) -> EncoderInstruments:
    services: weakref.WeakSet[EncoderService] = weakref.WeakSet()

    def observe_streams(_options: object) -> list[metrics.Observation]:
        return [metrics.Observation(len(s.workers), {"encoder.id": s.instance}) for s in list(services)]

    def observer(field: str) -> Callable[[object], list[metrics.Observation]]:
        """A gauge callback reporting ``field`` of each stream's latest statistics."""

        def observe(_options: object) -> list[metrics.Observation]:
            return [metrics.Observation(getattr(stats, field), {"stream.id": stream_id,
                                                                "encoder.kind": stats.encoder_kind})
                    for service in list(services) for stream_id, stats in list(service.latest.items())]

        return observe

    meter.create_observable_gauge("framecast.encoder.streams", [observe_streams], unit="{stream}")
    for name, unit, field in STREAM_GAUGES:
        meter.create_observable_gauge(f"framecast.encoder.stream.{name}", [observer(field)], unit=unit)
    return EncoderInstruments(
        frames=meter.create_counter("framecast.encoder.frames", unit="{frame}",
                                    description="frames written to FFmpeg"),
        dropped=meter.create_counter("framecast.encoder.dropped", unit="{frame}",
                                     description="frames skipped because the encoder lagged"),
        services=services,
    )


encoder_instruments = instruments("framecast.encoder", _create)

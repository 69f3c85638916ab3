"""Capture's OpenTelemetry instruments, made once per process on first use.

Frames are observed, not counted per frame: the send path stays free of metric calls. Each open
producer adds itself to ``producers``, a weak set the frame counter's callback reads.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from opentelemetry import metrics

from framecast.runtime.telemetry import instruments

if TYPE_CHECKING:
    from .producer import Producer

__all__ = ["CaptureInstruments", "capture_instruments"]


@dataclass(frozen=True)
class CaptureInstruments:
    producers: weakref.WeakSet[Producer]
    """The open producers of this process, whose frames ``framecast.capture.frames`` counts."""


def _create(meter: metrics.Meter) -> CaptureInstruments:
    producers: weakref.WeakSet[Producer] = weakref.WeakSet()

    def observe_frames(_options: object) -> list[metrics.Observation]:
        return [metrics.Observation(p.frames_sent, {"stream.id": p.stream_id}) for p in list(producers)]

    meter.create_observable_counter("framecast.capture.frames", [observe_frames], unit="{frame}",
                                    description="frames handed to the frame transport, per open stream")
    return CaptureInstruments(producers=producers)


capture_instruments = instruments("framecast.capture", _create)

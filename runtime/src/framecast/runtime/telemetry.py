"""OpenTelemetry tracer and meter providers for one service process.

Spans always get real ids (so logs carry trace ids and context propagates over NATS), but
nothing is exported unless asked: OTLP over HTTP when OTEL_EXPORTER_OTLP_ENDPOINT (or the
per-signal variable) is set, the console with FRAMECAST_OTEL_CONSOLE=true. The standard OTEL_*
variables (service name, resource attributes, propagators, sampler) are honoured by the SDK.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from opentelemetry import metrics, trace

if TYPE_CHECKING:
    pass

I = TypeVar("I")  # noqa: E741 - the instruments a service defines


def _otlp_configured(signal: str) -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


class Telemetry:
    """The providers of one process; ``shutdown()`` flushes what is buffered."""

    def __init__(self, service: str, instance: str, *, console: bool = False) -> None:
        # The SDK is imported here, not at module level: a process that only defines instruments
        # (a CV worker using the capture SDK) need not load it.
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import (
            ConsoleMetricExporter,
            MetricReader,
            PeriodicExportingMetricReader,
        )
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

        resource = Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME", f"framecast-{service}"),
             "service.namespace": "framecast",
             "service.instance.id": instance}
        )
        self.tracer_provider = TracerProvider(resource=resource)
        if _otlp_configured("TRACES"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self.tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        if console:
            self.tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))

        readers: list[MetricReader] = []
        if _otlp_configured("METRICS"):
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        if console:
            readers.append(PeriodicExportingMetricReader(ConsoleMetricExporter()))
        self.meter_provider = MeterProvider(resource=resource, metric_readers=readers)

    def install(self) -> Telemetry:
        """Make these the global providers (once per process; later calls are ignored by OTel)."""
        trace.set_tracer_provider(self.tracer_provider)
        metrics.set_meter_provider(self.meter_provider)
        return self

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def instruments(meter: str, create: Callable[[metrics.Meter], I]) -> Callable[[], I]:
    """A getter of the instruments ``create`` makes from ``meter``: made once per process, on first use.

    The one way a service defines its metrics: ``_metrics = instruments("framecast.x", create)`` at
    module level, ``_metrics().frames.add(1)`` where it counts. Made on first use, they come from
    the provider ``Telemetry.install`` set; made once, an observable instrument keeps its one
    callback (OpenTelemetry identifies instruments by name and ignores a second registration).
    """

    @functools.cache
    def get() -> I:
        return create(metrics.get_meter(meter))

    return get

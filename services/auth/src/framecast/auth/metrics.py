"""The auth service's OpenTelemetry instruments, made once per process on first use."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry import metrics

from framecast.runtime.telemetry import instruments

__all__ = ["AuthInstruments", "auth_instruments"]


@dataclass(frozen=True)
class AuthInstruments:
    decisions: metrics.Counter
    """The hook's answers (app.py)."""
    tokens: metrics.Counter
    """Token requests over NATS (service.py)."""


def _create(meter: metrics.Meter) -> AuthInstruments:
    return AuthInstruments(
        decisions=meter.create_counter(
            "framecast.auth.decisions", unit="{decision}",
            description="auth hook answers, by action, protocol, decision (allow, deny) and reason",
        ),
        tokens=meter.create_counter(
            "framecast.auth.tokens", unit="{token}", description="token requests over NATS, by role and outcome",
        ),
    )


auth_instruments = instruments("framecast.auth", _create)

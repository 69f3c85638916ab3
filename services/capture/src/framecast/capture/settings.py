"""The capture service's settings: one FRAMECAST_* variable per field, validated once at start-up."""

from __future__ import annotations

from framecast.runtime.settings import CommonSettings


class CaptureSettings(CommonSettings, kw_only=True, frozen=True):
    max_streams: int = 16
    """Streams this instance produces at most; more are refused so another instance takes them."""

"""A token from the auth service, held until shortly before it expires by this host's own clock.

Why: a token's ``expires_at`` is on the auth service's clock, and hosts' wall clocks may differ
from it by tens of seconds. How long the token stays valid (``TokenIssued.valid_for_s``) is the
same on every clock, so the holder counts it down on its monotonic clock from the moment it
received the token; a skewed or stepped wall clock then neither reuses an expired token nor
throws away a good one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.errors import BusError
from framecast.proto.messages import TokenIssued, TokenRequest

from .mediamtx_api import MediaMTXUnavailable


class TokenLease:
    """``issued``, and how many seconds of validity it has left (``remaining``)."""

    def __init__(self, issued: TokenIssued, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.issued = issued
        self._clock = clock
        valid_for = issued.valid_for_s if issued.valid_for_s is not None else issued.expires_at - time.time()
        self._until = clock() + valid_for

    @property
    def token(self) -> str:
        return self.issued.token

    def remaining(self) -> float:
        """Seconds until the token expires, by this host's monotonic clock."""
        return self._until - self._clock()


class ServiceTokens:
    """MediaMTX control-API tokens from the auth service, renewed a minute before they expire:
    the ``token`` source of a ``MediaMTXClient`` (the gateway's, the encoder's)."""

    def __init__(self, bus: Bus, subject: str, api_url: str = "MediaMTX") -> None:
        self.bus = bus
        self.subject = subject
        self.api_url = api_url
        self._lease: TokenLease | None = None

    async def __call__(self) -> str:
        if self._lease is None or self._lease.remaining() < 60:
            try:
                self._lease = TokenLease(await self.bus.request(
                    subjects.AUTH_TOKEN_ISSUE, TokenRequest(role="service", subject=self.subject), TokenIssued,
                    service="auth", timeout=3,
                ))
            except BusError as exc:
                raise MediaMTXUnavailable(self.api_url, f"no control-API token from the auth service: {exc}") \
                    from None
        return self._lease.token

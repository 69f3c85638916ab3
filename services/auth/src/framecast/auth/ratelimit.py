"""Per-client limits on failed auth attempts, so guessing tokens through MediaMTX stays slow.

Why: MediaMTX already sleeps 0-4 s before answering a rejected client (docs/mediamtx.md,
"Auth hook"), but the sleep happens inside MediaMTX; every attempt still costs us a signature
check. A client that keeps failing is refused here without verifying anything, for ``block_s``
seconds.

Each client has a token bucket of ``max_failures`` that refills at ``max_failures`` per
``window_s``: a burst of ``max_failures`` failures (20 by default) empties it and starts the
block, and no client sustains more than ``max_failures`` failures per ``window_s``. Only
failures spend tokens; a client that succeeds is never slowed. IPv6 clients are grouped by
their /64, which one host usually controls entirely. Memory is bounded: beyond ``max_clients``
the least recently failing client is forgotten.

Not thread-safe: the hook runs on one event loop.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    updated: float
    blocked_until: float = 0.0


class FailureLimiter:
    """Counts failures per client IP and says which clients are blocked."""

    def __init__(
        self,
        *,
        max_failures: int = 20,
        window_s: float = 60.0,
        block_s: float = 300.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window_s <= 0 or block_s < 0 or max_clients < 1:
            raise ValueError("max_failures, window_s and max_clients must be positive, block_s not negative")
        self.max_failures = max_failures
        self.window_s = window_s
        self.block_s = block_s
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        """How many clients are being tracked."""
        return len(self._buckets)

    def blocked(self, ip: str) -> bool:
        """Whether ``ip`` must be refused without looking at its credentials."""
        bucket = self._buckets.get(client_key(ip))
        return bucket is not None and self.clock() < bucket.blocked_until

    def record_failure(self, ip: str) -> None:
        """Spend one token of ``ip``'s bucket; an empty bucket blocks the client.

        While the client is blocked this only keeps it tracked (it is not forgotten first).
        """
        key = client_key(ip)
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=float(self.max_failures), updated=now)
            if len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            rate = self.max_failures / self.window_s
            bucket.tokens = min(float(self.max_failures), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
        if now < bucket.blocked_until:
            return
        bucket.tokens -= 1.0
        if bucket.tokens < 1.0:
            bucket.blocked_until = now + self.block_s
            bucket.tokens = float(self.max_failures)


def client_key(ip: str) -> str:
    """The identity a client is limited under: its IPv4 address or its IPv6 /64."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)

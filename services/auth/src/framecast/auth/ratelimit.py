"""Per-client limits on failed auth attempts, so guessing tokens through MediaMTX stays slow.

Why: MediaMTX already sleeps 0-4 s before answering a rejected client (docs/mediamtx.md,
"Auth hook"), but the sleep happens inside MediaMTX; every attempt still costs us a signature
check. A client that keeps failing is blocked for ``block_s`` seconds: while blocked, its
tokens are verified only at ``probe_rate`` per second (a burst of ``probe_burst``), the rest
refused without verifying anything.

A block must not lock out the honest viewers behind the same NAT address, so the limiter never
refuses a token it knows to be good: one that verified (from any client) and has not expired
is always let through to the full check, and a new token gets in whenever the probe allowance
has room, which only failed signature checks spend (a token refused before its signature is
checked, as malformed or with an unknown key, costs nothing). So a blocked address keeps
serving valid tokens; only while it is, at that very moment, also sending forged signatures
faster than ``probe_rate`` does a token it never presented before wait for the next probe.

Each client has a token bucket of ``max_failures`` that refills at ``max_failures`` per
``window_s``: a burst of ``max_failures`` failures (20 by default) empties it and starts the
block, and no client sustains more than ``max_failures`` failures per ``window_s``. IPv6
clients are grouped by their /64, which one host usually controls entirely. Memory is bounded:
beyond ``max_clients`` the least recently failing client (and the oldest good token) is
forgotten. Tokens are remembered by a 128-bit BLAKE2b digest, never in clear.

Not thread-safe: the hook runs on one event loop.
"""

from __future__ import annotations

import hashlib
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
    probes: float = 0.0
    probed: float = 0.0


class FailureLimiter:
    """Counts failures per client IP and says which clients are blocked."""

    def __init__(
        self,
        *,
        max_failures: int = 20,
        window_s: float = 60.0,
        block_s: float = 300.0,
        max_clients: int = 10_000,
        probe_rate: float = 1.0,
        probe_burst: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_failures < 1 or window_s <= 0 or block_s < 0 or max_clients < 1 or probe_rate < 0 or probe_burst < 1:
            raise ValueError("max_failures, window_s, max_clients and probe_burst must be positive, "
                             "block_s and probe_rate not negative")
        self.max_failures = max_failures
        self.window_s = window_s
        self.block_s = block_s
        self.max_clients = max_clients
        self.probe_rate = probe_rate
        self.probe_burst = probe_burst
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._good: OrderedDict[bytes, float] = OrderedDict()

    def __len__(self) -> int:
        """How many clients are being tracked."""
        return len(self._buckets)

    def blocked(self, ip: str) -> bool:
        """Whether ``ip`` must be refused without looking at its credentials."""
        bucket = self._buckets.get(client_key(ip))
        return bucket is not None and self.clock() < bucket.blocked_until

    def admit(self, ip: str, token: str) -> bool:
        """Whether ``token`` from ``ip`` may be verified now: always, unless ``ip`` is blocked;
        then only a known good token, or a new one while the probe allowance has room."""
        key = client_key(ip)
        bucket = self._buckets.get(key)
        now = self.clock()
        if bucket is None or now >= bucket.blocked_until:
            return True
        self._buckets.move_to_end(key)  # still active: not the one to forget
        good_until = self._good.get(_fingerprint(token))
        if good_until is not None and now < good_until:
            return True
        self._refill_probes(bucket, now)
        return bucket.probes >= 1.0

    def record_success(self, token: str, valid_for_s: float) -> None:
        """``token`` verified: let it through blocks for the ``valid_for_s`` seconds it has left."""
        key = _fingerprint(token)
        self._good[key] = self.clock() + valid_for_s
        self._good.move_to_end(key)
        if len(self._good) > self.max_clients:
            self._good.popitem(last=False)

    def record_failure(self, ip: str, *, checked_signature: bool = True) -> None:
        """Spend one token of ``ip``'s bucket; an empty bucket blocks the client.

        While the client is blocked this keeps it tracked (it is not forgotten first) and, if
        the failure cost a signature check, spends one probe of its allowance.
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
            if checked_signature:
                self._refill_probes(bucket, now)
                bucket.probes = max(0.0, bucket.probes - 1.0)
            return
        bucket.tokens -= 1.0
        if bucket.tokens < 1.0:
            bucket.blocked_until = now + self.block_s
            bucket.tokens = float(self.max_failures)
            bucket.probes = float(self.probe_burst)
            bucket.probed = now

    def _refill_probes(self, bucket: _Bucket, now: float) -> None:
        bucket.probes = min(float(self.probe_burst), bucket.probes + (now - bucket.probed) * self.probe_rate)
        bucket.probed = now


def _fingerprint(token: str) -> bytes:
    return hashlib.blake2b(token.encode(), digest_size=16).digest()


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

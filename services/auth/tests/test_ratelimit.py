"""The failure limiter: when a client gets blocked, for how long, and how much it remembers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from framecast.auth.ratelimit import FailureLimiter, client_key

if TYPE_CHECKING:
    from conftest import FakeClock


def test_a_burst_of_failures_blocks_the_client(clock: FakeClock) -> None:
    limiter = FailureLimiter(max_failures=20, window_s=60, block_s=300, clock=clock)
    for _ in range(19):
        limiter.record_failure("198.51.100.1")
    assert not limiter.blocked("198.51.100.1")
    limiter.record_failure("198.51.100.1")
    assert limiter.blocked("198.51.100.1")
    assert not limiter.blocked("198.51.100.2")
    clock.advance(299)
    assert limiter.blocked("198.51.100.1")
    clock.advance(1)
    assert not limiter.blocked("198.51.100.1")


def test_failures_at_the_refill_rate_never_block(clock: FakeClock) -> None:
    limiter = FailureLimiter(max_failures=20, window_s=60, clock=clock)
    for _ in range(200):
        limiter.record_failure("198.51.100.1")
        assert not limiter.blocked("198.51.100.1")
        clock.advance(3)


def test_failures_while_blocked_do_not_extend_the_block(clock: FakeClock) -> None:
    limiter = FailureLimiter(max_failures=2, block_s=10, clock=clock)
    limiter.record_failure("198.51.100.1")
    limiter.record_failure("198.51.100.1")
    for _ in range(9):
        clock.advance(1)
        limiter.record_failure("198.51.100.1")
    clock.advance(1)
    assert not limiter.blocked("198.51.100.1")


def test_memory_is_bounded(clock: FakeClock) -> None:
    limiter = FailureLimiter(max_failures=1, max_clients=100, clock=clock)
    limiter.record_failure("10.0.0.1")
    assert limiter.blocked("10.0.0.1")
    for i in range(1000):
        limiter.record_failure(f"10.1.{i // 256}.{i % 256}")
    assert len(limiter) == 100
    assert not limiter.blocked("10.0.0.1"), "the oldest client was forgotten"


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("<nil>", "<nil>"),
        ("x" * 100, "x" * 64),
    ],
)
def test_clients_are_keyed_by_ipv4_address_or_ipv6_prefix(ip: str, key: str) -> None:
    assert client_key(ip) == key


def test_one_ipv6_host_rotating_addresses_is_still_one_client(clock: FakeClock) -> None:
    limiter = FailureLimiter(max_failures=5, clock=clock)
    for i in range(5):
        limiter.record_failure(f"2001:db8::{i + 1:x}")
    assert limiter.blocked("2001:db8::ffff")
    assert not limiter.blocked("2001:db8:0:1::1")


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        FailureLimiter(max_failures=0)

"""A held token expires by the holder's own clock, whatever the issuer's wall clock said."""

from __future__ import annotations

import time

import pytest

from framecast.proto.messages import TokenIssued
from framecast.runtime.lease import TokenLease


class Monotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("auth_clock_ahead_s", [-30.0, 0.0, 30.0, 3600.0])
def test_the_lease_counts_down_the_validity_auth_gave_whatever_its_clock(auth_clock_ahead_s: float) -> None:
    monotonic = Monotonic()
    auth_now = time.time() + auth_clock_ahead_s
    issued = TokenIssued(token="t", expires_at=auth_now + 300, kid="k", valid_for_s=300)
    lease = TokenLease(issued, clock=monotonic)
    assert lease.remaining() == 300
    monotonic.now += 290
    assert lease.remaining() == 10
    monotonic.now += 20
    assert lease.remaining() == -10


def test_a_token_from_an_older_auth_service_falls_back_to_its_expiry_time() -> None:
    issued = TokenIssued(token="t", expires_at=time.time() + 120, kid="k")
    assert 119 < TokenLease(issued).remaining() <= 120

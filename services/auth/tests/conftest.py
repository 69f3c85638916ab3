"""Fixtures for the auth tests: a controllable clock, a key directory, and MediaMTX-shaped requests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from framecast.auth import FailureLimiter, KeyStore, TokenIssuer, TokenVerifier, create_app
from framecast.proto.messages import AuthDecision

ISSUER = "framecast-auth"
AUDIENCE = "mediamtx"
START = 1_700_000_000.0

MakeRequest = Callable[..., dict[str, Any]]
MakeClaims = Callable[..., dict[str, Any]]


class FakeClock:
    """Wall-clock seconds that move only when a test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def keystore(key_dir: Path, clock: FakeClock) -> KeyStore:
    return KeyStore(key_dir, clock=clock)


@pytest.fixture
def issuer(keystore: KeyStore, clock: FakeClock) -> TokenIssuer:
    return TokenIssuer(keystore, ISSUER, AUDIENCE, clock)


@pytest.fixture
def verifier(keystore: KeyStore, clock: FakeClock) -> TokenVerifier:
    return TokenVerifier(keystore, ISSUER, AUDIENCE, clock=clock)


@pytest.fixture
def revoked() -> set[str]:
    """The jtis the revocation check reports as revoked; tests add to it."""
    return set()


@pytest.fixture
def audit_log() -> list[AuthDecision]:
    return []


@pytest.fixture
def limiter(clock: FakeClock) -> FailureLimiter:
    return FailureLimiter(clock=clock)


@pytest.fixture
def app(
    keystore: KeyStore,
    verifier: TokenVerifier,
    revoked: set[str],
    audit_log: list[AuthDecision],
    limiter: FailureLimiter,
    clock: FakeClock,
) -> Litestar:
    return create_app(keystore, verifier, revoked.__contains__, audit_log.append, limiter, clock=clock)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app) as test_client:
        yield test_client


@pytest.fixture
def mediamtx_request() -> MakeRequest:
    """A hook body with every key MediaMTX v1.20 sends, in its order; keywords override."""

    def make(**fields: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ip": "127.0.0.1",
            "user": "",
            "password": "",
            "token": "",
            "action": "read",
            "path": "cam1",
            "protocol": "rtsp",
            "id": "5f1c3f4e-9a0b-4c2d-8e7f-0a1b2c3d4e5f",
            "query": "",
            "userAgent": "Lavf/61.7.100",
        }
        unknown = set(fields) - set(body)
        assert not unknown, f"not a MediaMTX hook field: {unknown}"
        body.update(fields)
        return body

    return make


@pytest.fixture
def make_claims(clock: FakeClock) -> MakeClaims:
    """Valid claims for hand-made tokens (a read of cam1); keywords override, None removes."""

    def make(**overrides: Any) -> dict[str, Any]:
        now = int(clock())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "tester",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": "jti-under-test",
            "mediamtx_permissions": [{"action": "read", "path": "cam1"}],
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    return make

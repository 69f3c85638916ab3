"""Viewer authentication: JWTs checked against a real JWKS served on loopback, the API key, and
what the streams claim allows through the real HTTP API."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from litestar import Litestar, Response, get

from framecast.devstack.nats import NatsServer
from framecast.gateway.service import GatewayService, lifespan
from framecast.gateway.settings import GatewaySettings
from framecast.gateway.viewers import (
    ALL_STREAMS,
    Authenticator,
    JwksCache,
    JwtVerifier,
    KeysUnavailable,
    NotAuthenticated,
)
from framecast.proto.bus import Bus
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from framecast.runtime.lifecycle import Runtime
from framecast.runtime.settings import SettingsError, load
from tests.support.fake_mediamtx import serve_asgi

ISSUER = "https://idp.example.test/"
AUDIENCE = "framecast-gateway"
API_KEY = "dev-key-" + uuid.uuid4().hex

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: Any, kid: str, alg: str) -> dict[str, Any]:
    algorithm = jwt.get_algorithm_by_name(alg)
    return algorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": kid, "alg": alg, "use": "sig"}


class IdentityProvider:
    """A JWKS endpoint on loopback whose keys a test can change or break."""

    def __init__(self) -> None:
        self.keys = [public_jwk(RSA_KEY, "rsa-1", "RS256"), public_jwk(EC_KEY, "ec-1", "ES256")]
        self.fetches = 0
        self.status = 200
        self.url = ""

    def app(self) -> Litestar:
        @get("/.well-known/jwks.json", sync_to_thread=False)
        def jwks() -> Response[Any]:
            self.fetches += 1
            return Response({"keys": self.keys}, status_code=self.status)

        return Litestar([jwks], openapi_config=None, logging_config=None)


def token(claims: dict[str, Any] | None = None, *, key: Any = RSA_KEY, kid: str | None = "rsa-1",
          alg: str = "RS256", **changes: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300,
            "framecast_streams": ["cam1"]} | (claims or {}) | changes
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm=alg, headers=headers)


@pytest.fixture
async def idp() -> AsyncIterator[IdentityProvider]:
    provider = IdentityProvider()
    async with serve_asgi(provider.app()) as url:
        provider.url = f"{url}/.well-known/jwks.json"
        yield provider


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def authenticator(idp: IdentityProvider, http: httpx.AsyncClient, clock: FakeClock) -> Authenticator:
    keys = JwksCache(idp.url, http, ttl_s=300, clock=clock)
    verifier = JwtVerifier(keys, issuer=ISSUER, audience=AUDIENCE, streams_claim="framecast_streams")
    return Authenticator(api_key=API_KEY, jwt_verifier=verifier)


def bearer(value: str) -> dict[str, str]:
    return {"authorization": f"Bearer {value}"}


# ----- JWTs ----------------------------------------------------------------------------------------


async def test_rs256_and_es256_tokens_from_the_jwks_are_accepted(authenticator: Authenticator) -> None:
    viewer = await authenticator.authenticate(bearer(token()))
    assert viewer.subject == "alice" and viewer.streams == {"cam1"}
    assert viewer.may_watch("cam1") and not viewer.may_watch("cam2")
    ec_viewer = await authenticator.authenticate(bearer(token(key=EC_KEY, kid="ec-1", alg="ES256",
                                                              framecast_streams=["*"])))
    assert ec_viewer.may_watch("anything")


@pytest.mark.parametrize(("make", "why"), [
    (lambda: token(exp=int(time.time()) - 60), "expired"),
    (lambda: token(aud="another-service"), "audience"),
    (lambda: token(iss="https://evil.example.test/"), "not issued by"),
    (lambda: token(kid="unknown-kid"), "not published"),
    (lambda: token(key=OTHER_RSA_KEY), "Signature verification failed"),
    (lambda: token(exp=None), "exp"),
    (lambda: token(key="a-shared-secret-of-enough-length-32b", alg="HS256"), "HS256"),
    (lambda: token(key=EC_KEY, kid="rsa-1", alg="ES256"), "is for RS256"),
    (lambda: jwt.encode({"sub": "x"}, None, algorithm="none"), "'none'"),
    (lambda: "not.a.jwt", "neither the API key nor a JWT"),
])
async def test_bad_tokens_are_refused_saying_why(authenticator: Authenticator, make: Any, why: str) -> None:
    with pytest.raises(NotAuthenticated) as refused:
        await authenticator.authenticate(bearer(make()))
    assert why in refused.value.detail
    assert refused.value.challenge == 'Bearer realm="framecast", error="invalid_token"'


async def test_missing_or_odd_claims_allow_no_stream(authenticator: Authenticator) -> None:
    assert (await authenticator.authenticate(bearer(token(framecast_streams=None)))).streams == frozenset()
    assert (await authenticator.authenticate(bearer(token(framecast_streams="cam1")))).streams == frozenset()


async def test_jwks_is_cached_and_fetched_again_for_a_new_key(
    authenticator: Authenticator, idp: IdentityProvider, clock: FakeClock
) -> None:
    for _ in range(3):
        await authenticator.authenticate(bearer(token()))
    assert idp.fetches == 1
    idp.keys.append(public_jwk(OTHER_RSA_KEY, "rsa-2", "RS256"))  # the provider rotates
    with pytest.raises(NotAuthenticated):  # too soon after the last fetch to fetch again
        await authenticator.authenticate(bearer(token(key=OTHER_RSA_KEY, kid="rsa-2")))
    clock.now += 11
    viewer = await authenticator.authenticate(bearer(token(key=OTHER_RSA_KEY, kid="rsa-2")))
    assert viewer.subject == "alice" and idp.fetches == 2
    clock.now += 300
    await authenticator.authenticate(bearer(token()))
    assert idp.fetches == 3  # the cache expired


async def test_unreachable_jwks_is_unavailable_first_then_stale_keys_serve(
    authenticator: Authenticator, idp: IdentityProvider, clock: FakeClock
) -> None:
    idp.status = 503
    with pytest.raises(KeysUnavailable):
        await authenticator.authenticate(bearer(token()))
    idp.status = 200
    clock.now += 11
    await authenticator.authenticate(bearer(token()))
    idp.status = 500
    clock.now += 301
    assert (await authenticator.authenticate(bearer(token()))).subject == "alice"


# ----- the API key and no authentication -----------------------------------------------------------------


async def test_api_key_as_bearer_or_header(authenticator: Authenticator) -> None:
    for headers in (bearer(API_KEY), {"x-api-key": API_KEY}):
        viewer = await authenticator.authenticate(headers)
        assert viewer.subject == "api-key" and ALL_STREAMS in viewer.streams
    with pytest.raises(NotAuthenticated) as refused:
        await authenticator.authenticate({})
    assert not refused.value.token_given and refused.value.challenge == 'Bearer realm="framecast"'
    with pytest.raises(NotAuthenticated):
        await authenticator.authenticate({"x-api-key": API_KEY + "x"})


async def test_key_only_and_disabled_modes() -> None:
    key_only = Authenticator(api_key=API_KEY)
    with pytest.raises(NotAuthenticated, match="API key was not accepted"):
        await key_only.authenticate(bearer(token()))
    assert (await Authenticator(disabled=True).authenticate({})).may_watch("any")


@pytest.mark.parametrize(("environ", "variable"), [
    ({}, "FRAMECAST_GATEWAY_JWKS_URL"),
    ({"FRAMECAST_GATEWAY_JWKS_URL": "https://idp/jwks"}, "FRAMECAST_GATEWAY_ISSUER"),
    ({"FRAMECAST_GATEWAY_JWKS_URL": "https://idp/jwks", "FRAMECAST_GATEWAY_ISSUER": "i"},
     "FRAMECAST_GATEWAY_AUDIENCE"),
    ({"FRAMECAST_GATEWAY_API_KEY": "s3cr3t"}, "FRAMECAST_GATEWAY_API_KEY"),
    ({"FRAMECAST_GATEWAY_AUTH": "off"}, "FRAMECAST_GATEWAY_AUTH"),
])
def test_settings_fail_closed_naming_the_variable(environ: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError) as error:
        load(GatewaySettings, environ)
    assert error.value.variable == variable
    assert "s3cr3t" not in str(error.value)


def test_settings_accept_each_way_of_authenticating() -> None:
    assert load(GatewaySettings, {"FRAMECAST_GATEWAY_AUTH": "none"}).gateway_auth == "none"
    assert load(GatewaySettings, {"FRAMECAST_GATEWAY_API_KEY": API_KEY}).gateway_api_key == API_KEY
    jwt_settings = load(GatewaySettings, {"FRAMECAST_GATEWAY_JWKS_URL": "https://idp/jwks",
                                          "FRAMECAST_GATEWAY_ISSUER": ISSUER,
                                          "FRAMECAST_GATEWAY_AUDIENCE": AUDIENCE})
    assert jwt_settings.gateway_streams_claim == "framecast_streams"


# ----- the claim decides, through the HTTP API ------------------------------------------------------------


@pytest.fixture
async def gateway(nats_server: NatsServer, idp: IdentityProvider, free_port: int) -> AsyncIterator[GatewayService]:
    settings = GatewaySettings(
        nats_url=nats_server.url, gateway_addr="127.0.0.1:0", gateway_jwks_url=idp.url,
        gateway_issuer=ISSUER, gateway_audience=AUDIENCE, mediamtx_api=f"http://127.0.0.1:{free_port}",
        mediamtx_poll_s=60,
    )
    async with lifespan(Runtime("gateway", settings, "gateway-jwt-test")) as service:
        yield service


async def test_the_streams_claim_decides_what_a_viewer_sees_and_does(
    gateway: GatewayService, bus: Bus, stream_id: str
) -> None:
    mine, theirs = stream_id, stream_id + "other"
    store = await StateStore.open(bus, "test")
    for sid in (mine, theirs):
        await store.transition(sid, StreamState.REQUESTED)
    view = gateway.gateway.view
    assert await view.wait_for(lambda: {mine, theirs} <= view.records.keys(), 5)
    headers = bearer(token(framecast_streams=[mine]))
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=5) as http:
        listed = [s["stream_id"] for s in (await http.get("/api/streams")).json()]
        assert mine in listed and theirs not in listed
        assert (await http.get(f"/api/streams/{mine}")).status_code == 200
        for method, path, body in (
            ("GET", f"/api/streams/{theirs}", None),
            ("POST", f"/api/streams/{theirs}/playback", None),
            ("DELETE", f"/api/streams/{theirs}", None),
            ("POST", "/api/streams", {"stream_id": theirs, "source": {"kind": "testpattern"},
                                      "width": 640, "height": 360}),
            ("GET", f"/api/events?stream={theirs}", None),
        ):
            response = await http.request(method, path, json=body)
            assert response.status_code == 403, (method, path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert theirs in response.json()["detail"] and "alice" in response.json()["detail"]

        async with http.stream("GET", "/api/events") as events:
            await store.transition(theirs, StreamState.STARTING)
            await store.transition(mine, StreamState.STARTING)
            lines = events.aiter_lines()
            data = await asyncio.wait_for(anext(line async for line in lines if line.startswith("data:")), 5)
        assert f'"stream_id":"{mine}"' in data


async def test_expired_token_and_unreachable_jwks_over_http(gateway: GatewayService, idp: IdentityProvider) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as http:
        idp.status = 500
        unavailable = await http.get("/api/streams", headers=bearer(token()))
        assert unavailable.status_code == 503 and "identity provider" in unavailable.json()["detail"]
        idp.status = 200
        expired = await http.get("/api/streams", headers=bearer(token(exp=int(time.time()) - 60)))
        assert expired.status_code == 401
        assert expired.headers["www-authenticate"] == 'Bearer realm="framecast", error="invalid_token"'
        assert "expired" in expired.json()["detail"]

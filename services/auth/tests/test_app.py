"""The HTTP surface: bad requests stay 4xx problems, the JWKS endpoint, probes, and a clean audit trail."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from framecast.auth import FailureLimiter, KeyStore, TokenIssuer, TokenVerifier, create_app
from framecast.proto.messages import AuthDecision

if TYPE_CHECKING:
    from conftest import FakeClock, MakeRequest

Client = AsyncTestClient[Litestar]


def assert_problem(response: object, status: int) -> None:
    assert response.status_code == status  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/problem+json"  # type: ignore[attr-defined]
    problem = response.json()  # type: ignore[attr-defined]
    assert problem["status"] == status and problem["title"]
    assert set(problem) <= {"type", "title", "status", "detail"}
    assert "Traceback" not in response.text and ".py" not in response.text  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"null",
        b"[1,2]",
        b'{"ip":"1.1.1.1"}',
        b'{"ip":"1.1.1.1","action":"read","id":5}',
        b"\x00\xff",
        b'{"ip":"\xff\xfe","action":"read"}',
        b'{"ip":"1.1.1.1","user":"\xc3\x28"}',
        b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"x":' + b'{"y":' * 2500 + b"1" + b"}" * 2500 + b"}",
        b"[" * 10_000,
    ],
    ids=lambda body: repr(body[:24]),
)
async def test_malformed_hook_bodies_are_400(
    client: Client, body: bytes, audit_log: list[AuthDecision]
) -> None:
    response = await client.post("/mediamtx/auth", content=body, headers={"Content-Type": "application/json"})
    assert_problem(response, 400)
    assert audit_log == []


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx"]
)
async def test_wrong_content_type_is_415(
    client: Client, content_type: str, mediamtx_request: MakeRequest
) -> None:
    response = await client.post(
        "/mediamtx/auth",
        content=msgspec.json.encode(mediamtx_request()),
        headers={"Content-Type": content_type},
    )
    assert_problem(response, 415)


async def test_content_type_parameters_are_fine(client: Client, mediamtx_request: MakeRequest) -> None:
    response = await client.post(
        "/mediamtx/auth",
        content=msgspec.json.encode(mediamtx_request()),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert response.status_code == 401


async def test_oversized_bodies_are_413(client: Client, mediamtx_request: MakeRequest) -> None:
    body = msgspec.json.encode(mediamtx_request(query="a=" + "x" * 20_000))
    response = await client.post("/mediamtx/auth", content=body, headers={"Content-Type": "application/json"})
    assert_problem(response, 413)


@pytest.mark.parametrize("missing", ["ip", "user", "password", "token", "action", "path", "protocol", "id",
                                     "query", "userAgent"])
async def test_a_body_missing_any_mediamtx_key_is_400_even_with_a_valid_token(
    client: Client, issuer: TokenIssuer, mediamtx_request: MakeRequest, audit_log: list[AuthDecision], missing: str
) -> None:
    token = issuer.issue_viewer("cam1", "alice").token
    body = mediamtx_request(token=token, password=token, query=f"token={token}")
    assert (await client.post("/mediamtx/auth", json=body)).status_code == 200
    del body[missing]
    response = await client.post("/mediamtx/auth", json=body)
    assert_problem(response, 400)
    assert f"`{missing}`" in response.json()["detail"]
    assert token not in response.text
    assert len(audit_log) == 1


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nowhere", 404),
        ("GET", "/.well-known/jwks.jsonx", 404),
        ("GET", "/jwks", 404),
        ("GET", "/.well-known/jwks", 404),
        ("GET", "/mediamtx/auth", 405),
        ("POST", "/.well-known/jwks.json", 405),
    ],
)
async def test_unknown_routes_and_methods_cannot_pass_for_a_key_set(
    client: Client, method: str, path: str, status: int
) -> None:
    """MediaMTX caches any JSON object at its JWKS URL, whatever the status: a wrong URL must not parse."""
    response = await client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/plain")
    with pytest.raises(ValueError):
        msgspec.json.decode(response.content)
    assert "/.well-known/jwks.json" in response.text


async def test_an_internal_failure_denies_without_a_5xx(
    keystore: KeyStore,
    verifier: TokenVerifier,
    issuer: TokenIssuer,
    audit_log: list[AuthDecision],
    mediamtx_request: MakeRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_revocation(_jti: str) -> bool:
        raise RuntimeError("kv mirror lost")

    token = issuer.issue_viewer("cam1", "a").token
    app = create_app(keystore, verifier, broken_revocation, audit_log.append, None)
    async with AsyncTestClient(app) as client:
        response = await client.post("/mediamtx/auth", json=mediamtx_request(password=token, token=token))
    assert_problem(response, 401)
    assert "kv mirror" not in response.text
    assert audit_log[-1].reason == "internal_error"
    assert "kv mirror lost" in caplog.text, "the failure is logged for operators"
    assert token not in caplog.text


async def test_a_failing_audit_sink_does_not_change_the_answer(
    keystore: KeyStore, verifier: TokenVerifier, issuer: TokenIssuer, mediamtx_request: MakeRequest
) -> None:
    def broken_audit(_decision: AuthDecision) -> None:
        raise ConnectionError("nats down")

    app = create_app(keystore, verifier, lambda jti: False, broken_audit, FailureLimiter())
    async with AsyncTestClient(app) as client:
        response = await client.post(
            "/mediamtx/auth", json=mediamtx_request(token=issuer.issue_viewer("cam1", "a").token)
        )
    assert response.status_code == 200


async def test_jwks_endpoint(client: Client, keystore: KeyStore) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.json() == keystore.jwks()
    following = keystore.rotate()
    assert following.kid in [k["kid"] for k in (await client.get("/.well-known/jwks.json")).json()["keys"]]


async def test_health_and_readiness(
    client: Client, keystore: KeyStore, verifier: TokenVerifier, clock: FakeClock
) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    app = create_app(keystore, verifier, lambda jti: False, lambda d: None, None, ready=lambda: False)
    async with AsyncTestClient(app) as not_ready:
        response = await not_ready.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "detail": "dependencies not ready"}
    clock.advance(-60)
    response = await client.get("/readyz")
    assert response.status_code == 503 and response.headers["content-type"] == "application/json"
    assert response.json()["status"] == "not ready" and response.json()["detail"]


async def test_no_credential_reaches_the_audit_trail_or_the_logs(
    client: Client,
    issuer: TokenIssuer,
    mediamtx_request: MakeRequest,
    audit_log: list[AuthDecision],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    valid = issuer.issue_viewer("cam1", "viewer").token
    secrets = [valid, "hunter2-password", "forged.token.value", "query-secret-token"]
    bodies = [
        mediamtx_request(user="u", password=valid, token=valid),
        mediamtx_request(user="u", password="hunter2-password", token="hunter2-password"),
        mediamtx_request(protocol="webrtc", token="forged.token.value"),
        mediamtx_request(protocol="hls", query="a=1&token=query-secret-token"),
        mediamtx_request(protocol="hls", query=f"token={valid}", action="publish"),
        mediamtx_request(action="admin", token=valid),
    ]
    for body in bodies:
        await client.post("/mediamtx/auth", json=body)
    assert len(audit_log) == len(bodies)
    assert [a.allowed for a in audit_log] == [True, False, False, False, False, False]
    trail = msgspec.json.encode(audit_log).decode() + repr(audit_log)
    logged = caplog.text + "".join(repr(r.args) + str(r.msg) for r in caplog.records)
    for secret in secrets:
        assert secret not in trail
        assert secret not in logged
    assert "query-secret" not in trail and "a=1" not in trail


async def test_every_decision_is_a_server_span_without_secrets(
    client: Client, issuer: TokenIssuer, mediamtx_request: MakeRequest, spans: InMemorySpanExporter
) -> None:
    valid = issuer.issue_viewer("cam1", "alice").token
    await client.post("/mediamtx/auth", json=mediamtx_request(protocol="webrtc", path="cam1", token=valid,
                                                               query=f"token={valid}"))
    await client.post("/mediamtx/auth", json=mediamtx_request(protocol="webrtc", path="cam2", token=valid))
    hooks = [s for s in spans.get_finished_spans() if s.name == "POST /mediamtx/auth"][-2:]
    assert [s.kind for s in hooks] == [SpanKind.SERVER, SpanKind.SERVER]
    allowed, denied = (dict(s.attributes or {}) for s in hooks)
    assert allowed["framecast.auth.decision"] == "allow" and allowed["enduser.id"] == "alice"
    assert allowed["mediamtx.action"] == "read" and allowed["mediamtx.protocol"] == "webrtc"
    assert denied["framecast.auth.decision"] == "deny" and denied["framecast.auth.reason"] == "forbidden"
    assert valid not in repr([s.to_json() for s in hooks])

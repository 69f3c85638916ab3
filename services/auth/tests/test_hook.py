"""The hook's request parsing, where the credential is found, and the decision itself."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from framecast.auth import FailureLimiter, TokenIssuer, TokenVerifier
from framecast.auth.hook import (
    Decision,
    HookRequest,
    HookRequestError,
    audit_record,
    decide,
    decode_request,
    extract_token,
    query_token,
)

if TYPE_CHECKING:
    from conftest import FakeClock, MakeRequest


def parse(body: dict[str, object]) -> HookRequest:
    return decode_request(json.dumps(body).encode())


def test_the_documented_example_decodes() -> None:
    body = (
        b'{"ip":"127.0.0.1","user":"testpublisher","password":"testpass","token":"testpass",'
        b'"action":"publish","path":"teststream","protocol":"rtsp",'
        b'"id":"9b2d7c4e-3f7a-4a51-b7a8-0c1d2e3f4a5b","query":"param=value","userAgent":"testagent"}'
    )
    request = decode_request(body)
    assert request.user == "testpublisher" and request.token == "testpass"
    assert request.action == "publish" and request.path == "teststream"
    assert request.id == "9b2d7c4e-3f7a-4a51-b7a8-0c1d2e3f4a5b"
    assert request.user_agent == "testagent"


def test_go_escapes_and_null_id_decode() -> None:
    request = decode_request(
        b'{"ip":"::1","user":"","password":"","token":"","action":"api","path":"","protocol":"",'
        b'"id":null,"query":"a=1\\u0026b=\\u003cc\\u003e","userAgent":""}'
    )
    assert request.query == "a=1&b=<c>"
    assert request.id is None


def test_older_mediamtx_without_token_or_user_agent_decodes() -> None:
    request = decode_request(
        b'{"ip":"10.0.0.5","user":"u","password":"p","action":"read","path":"cam1","protocol":"hls","id":null,"query":""}'
    )
    assert request.token == "" and request.user_agent == ""
    assert extract_token(request) == "p"


def test_unknown_fields_from_newer_mediamtx_are_ignored(mediamtx_request: MakeRequest) -> None:
    assert parse({**mediamtx_request(), "tenant": "x"}).path == "cam1"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"null",
        b"[]",
        b"{",
        b'{"ip":"1.2.3.4"}',
        b'{"action":"read"}',
        b'{"ip":1,"action":"read"}',
        b"\xff\xfe",
    ],
)
def test_bodies_mediamtx_never_sends_are_refused(body: bytes) -> None:
    with pytest.raises(HookRequestError):
        decode_request(body)


def test_repr_hides_credentials(mediamtx_request: MakeRequest) -> None:
    request = parse(
        mediamtx_request(user="u", password="s3cret-pw", token="s3cret-pw", query="token=s3cret-q")
    )
    assert "s3cret" not in repr(request) and "s3cret" not in str(request)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"token": "T", "password": "P", "query": "token=Q"}, "T"),
        ({"password": "P", "query": "token=Q"}, "P"),
        ({"query": "token=Q"}, "Q"),
        ({"query": "jwt=J"}, "J"),
        ({"query": "a=1&token=Q&z=2"}, "Q"),
        ({"query": "token=Q&jwt=J"}, "Q"),
        ({"query": "token=Q1&token=Q2&jwt=J"}, "J"),
        ({"query": "token=Q1&token=Q2"}, ""),
        ({"query": "tokens=Q&xjwt=J"}, ""),
        ({"query": "token="}, ""),
        ({"query": "controls=false&muted=true"}, ""),
        ({"query": "token=a%2Eb%2Ec"}, "a.b.c"),
        ({}, ""),
    ],
)
def test_where_the_token_is_found(
    mediamtx_request: MakeRequest, fields: dict[str, str], expected: str
) -> None:
    assert extract_token(parse(mediamtx_request(**fields))) == expected


def test_a_query_with_too_many_fields_carries_no_token() -> None:
    assert query_token("&".join(f"k{i}=v" for i in range(500)) + "&token=Q") == ""


def test_decision_allows_a_matching_token(
    issuer: TokenIssuer, verifier: TokenVerifier, mediamtx_request: MakeRequest
) -> None:
    issued = issuer.issue_viewer("cam1", "alice")
    decision = decide(parse(mediamtx_request(token=issued.token)), verifier, lambda jti: False)
    assert decision.allowed and decision.reason == "ok" and decision.subject == "alice"
    assert decision.jti


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({}, "no_credentials"),
        ({"action": "admin"}, "unknown_action"),
        ({"action": ""}, "unknown_action"),
        ({"token": "not-a-jwt"}, "malformed"),
        ({"action": "publish", "token": "VIEWER"}, "forbidden"),
        ({"path": "cam2", "token": "VIEWER"}, "forbidden"),
        ({"action": "api", "path": "", "protocol": "", "id": None, "token": "VIEWER"}, "forbidden"),
    ],
)
def test_decision_denies_with_a_reason(
    issuer: TokenIssuer,
    verifier: TokenVerifier,
    mediamtx_request: MakeRequest,
    fields: dict[str, object],
    reason: str,
) -> None:
    if fields.get("token") == "VIEWER":
        fields = {**fields, "token": issuer.issue_viewer("cam1", "alice").token}
    decision = decide(parse(mediamtx_request(**fields)), verifier, lambda jti: False)
    assert not decision.allowed
    assert decision.reason == reason


def test_a_revoked_token_is_denied(
    issuer: TokenIssuer, verifier: TokenVerifier, mediamtx_request: MakeRequest
) -> None:
    token = issuer.issue_viewer("cam1", "alice").token
    jti = verifier.verify(token).jti
    decision = decide(parse(mediamtx_request(token=token)), verifier, {jti}.__contains__)
    assert decision == Decision(False, "revoked", "alice", jti)


def test_a_blocked_client_is_denied_without_verifying(
    issuer: TokenIssuer, verifier: TokenVerifier, mediamtx_request: MakeRequest, clock: FakeClock
) -> None:
    limiter = FailureLimiter(max_failures=3, clock=clock)
    bad = parse(mediamtx_request(ip="203.0.113.7", token="forged"))
    good = parse(mediamtx_request(ip="203.0.113.7", token=issuer.issue_viewer("cam1", "alice").token))
    for _ in range(3):
        assert decide(bad, verifier, lambda jti: False, limiter).reason == "malformed"
    assert decide(good, verifier, lambda jti: False, limiter).reason == "rate_limited"
    other = parse(mediamtx_request(ip="203.0.113.8", token=good.token))
    assert decide(other, verifier, lambda jti: False, limiter).allowed
    clock.advance(limiter.block_s)
    assert decide(good, verifier, lambda jti: False, limiter).allowed


def test_neither_challenges_nor_successes_count_as_failures(
    issuer: TokenIssuer, verifier: TokenVerifier, mediamtx_request: MakeRequest, clock: FakeClock
) -> None:
    limiter = FailureLimiter(max_failures=2, clock=clock)
    empty = parse(mediamtx_request())
    good = parse(mediamtx_request(token=issuer.issue_viewer("cam1", "alice").token))
    for _ in range(50):
        assert decide(empty, verifier, lambda jti: False, limiter).reason == "no_credentials"
        assert decide(good, verifier, lambda jti: False, limiter).allowed
    assert len(limiter) == 0


def test_audit_record_carries_who_what_and_why(
    issuer: TokenIssuer, verifier: TokenVerifier, mediamtx_request: MakeRequest
) -> None:
    token = issuer.issue_viewer("cam1", "alice").token
    request = parse(
        mediamtx_request(ip="2001:db8::10", user="alice", password=token, token=token, query=f"token={token}")
    )
    record = audit_record(request, decide(request, verifier, lambda jti: False), at=12.5)
    assert (record.at, record.ip, record.action, record.path, record.protocol) == (
        12.5,
        "2001:db8::10",
        "read",
        "cam1",
        "rtsp",
    )
    assert (record.allowed, record.reason, record.subject) == (True, "ok", "alice")
    assert token not in repr(record)

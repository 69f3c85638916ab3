"""The hook's request parsing, where the credential is found, and the decision itself."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from framecast.auth import FailureLimiter, KeyStore, TokenIssuer, TokenVerifier
from framecast.auth.hook import (
    Decision,
    HookRequest,
    HookRequestError,
    RelayCredential,
    audit_record,
    decide,
    decode_request,
    extract_token,
    query_token,
)
from framecast.auth.tokens import VerifiedToken

if TYPE_CHECKING:
    from conftest import FakeClock, MakeRequest


def parse(body: dict[str, object]) -> HookRequest:
    return decode_request(json.dumps(body).encode())


def forged(issuer: TokenIssuer) -> str:
    """A well-formed token with a known kid and a wrong signature: costs a full ECDSA check."""
    header, payload, _ = issuer.issue_viewer("cam1", "mallory").token.split(".")
    other = issuer.issue_viewer("cam2", "mallory").token.split(".")[2]
    return f"{header}.{payload}.{other}"


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


@pytest.mark.parametrize(
    "body",
    [
        # MediaMTX before v1.12.3 (no token) and before v1.19.0 (no userAgent): refused, by design
        b'{"ip":"10.0.0.5","user":"u","password":"p","action":"read","path":"cam1","protocol":"hls","id":null,"query":""}',
        b'{"ip":"10.0.0.5","user":"u","password":"p","token":"p","action":"read","path":"cam1","protocol":"hls",'
        b'"id":null,"query":""}',
    ],
)
def test_older_mediamtx_shapes_are_refused(body: bytes) -> None:
    with pytest.raises(HookRequestError, match="missing required field"):
        decode_request(body)


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
        b'{"ip":"\xff","user":"","password":"","token":"","action":"read","path":"","protocol":"","id":null,'
        b'"query":"","userAgent":""}',
        b"[" * 5000,
        b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"ip":"1.2.3.4","user":"","password":"","token":"","action":"read","path":"","protocol":"","id":7,'
        b'"query":"","userAgent":""}',
    ],
    ids=lambda body: repr(body[:20]),
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
        # MediaMTX put the Bearer token, the password or the RTSP/RTMP query token into token
        ({"token": "T", "password": "T", "query": "token=Q"}, "T"),
        ({"token": "T", "protocol": "hls", "query": "token=Q"}, "T"),
        # HLS and WebRTC: MediaMTX leaves ?token= in the query, with its rule
        ({"protocol": "hls", "query": "token=Q"}, "Q"),
        ({"protocol": "webrtc", "query": "jwt=J"}, "J"),
        ({"protocol": "hls", "query": "a=1&token=Q&z=2"}, "Q"),
        ({"protocol": "webrtc", "query": "token=Q&jwt=J"}, "Q"),
        ({"protocol": "webrtc", "query": "token=Q1&token=Q2&jwt=J"}, "J"),
        ({"protocol": "webrtc", "query": "token=Q1&token=Q2"}, ""),
        ({"protocol": "hls", "query": "tokens=Q&xjwt=J"}, ""),
        ({"protocol": "hls", "query": "token="}, ""),
        ({"protocol": "webrtc", "query": "controls=false&muted=true"}, ""),
        ({"protocol": "hls", "query": "token=a%2Eb%2Ec"}, "a.b.c"),
        # nowhere else: an RTSP/RTMP query token MediaMTX did not take, api, metrics, pprof, playback
        ({"protocol": "rtsp", "query": "token=Q1&token=Q2&jwt=J"}, ""),
        ({"protocol": "rtmp", "query": "user=x&pass=P"}, ""),
        ({"protocol": "srt", "query": "token=Q"}, ""),
        *(
            ({"action": action, "protocol": "", "path": "", "id": None, "query": "token=Q"}, "")
            for action in ("api", "metrics", "pprof", "playback")
        ),
        ({"password": "P"}, ""),  # never without token from v1.12.3 on
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


RELAY_SECRET = "r" * 40


def relay_request(mediamtx_request: MakeRequest, password: str = RELAY_SECRET, **fields: object) -> HookRequest:
    """An edge MediaMTX's pull from its origin, as MediaMTX posts it (the password is also the token)."""
    return parse(mediamtx_request(user="framecast-relay", password=password, token=password, **fields))


def test_an_edge_with_the_relay_secret_may_read_a_stream_over_rtsp(
    verifier: TokenVerifier, mediamtx_request: MakeRequest
) -> None:
    decision = decide(relay_request(mediamtx_request), verifier, lambda jti: False, None, RelayCredential(RELAY_SECRET))
    assert decision == Decision(True, "ok", "relay")


@pytest.mark.parametrize(("secret", "fields", "reason"), [
    ("", {}, "bad_relay_secret"),  # no secret configured: relays are refused
    (RELAY_SECRET, {"password": "r" * 39}, "bad_relay_secret"),
    (RELAY_SECRET, {"action": "publish"}, "forbidden"),
    (RELAY_SECRET, {"action": "api", "path": "", "protocol": "", "id": None}, "forbidden"),
    (RELAY_SECRET, {"protocol": "webrtc"}, "forbidden"),
])
def test_the_relay_secret_grants_an_rtsp_read_and_nothing_else(
    verifier: TokenVerifier, mediamtx_request: MakeRequest, secret: str, fields: dict[str, object], reason: str
) -> None:
    request = relay_request(mediamtx_request, **fields)
    decision = decide(request, verifier, lambda jti: False, None, RelayCredential(secret))
    assert decision == Decision(False, reason, "relay")
    assert RELAY_SECRET not in repr(RelayCredential(RELAY_SECRET))


def test_guessing_the_relay_secret_is_limited_like_guessing_tokens(
    verifier: TokenVerifier, mediamtx_request: MakeRequest, clock: FakeClock
) -> None:
    limiter = FailureLimiter(max_failures=3, probe_rate=0.0, probe_burst=1, clock=clock)
    relay = RelayCredential(RELAY_SECRET)
    edge = relay_request(mediamtx_request, ip="203.0.113.9")
    assert decide(edge, verifier, lambda jti: False, limiter, relay).allowed
    reasons = [decide(relay_request(mediamtx_request, password=f"guess-{n}", ip="203.0.113.9"), verifier,
                      lambda jti: False, limiter, relay).reason for n in range(5)]
    assert reasons == ["bad_relay_secret"] * 4 + ["rate_limited"], "blocked after 3, one probe, then refused"
    assert decide(edge, verifier, lambda jti: False, limiter, relay).allowed, "the edge itself is not locked out"


class CountingVerifier(TokenVerifier):
    """The verifier under test, counting how often a signature is checked."""

    calls = 0

    def verify(self, token: str) -> VerifiedToken:
        self.calls += 1
        return super().verify(token)


def test_a_blocked_client_still_gets_in_with_a_valid_token(
    issuer: TokenIssuer, keystore: KeyStore, mediamtx_request: MakeRequest, clock: FakeClock
) -> None:
    """Viewers behind one NAT: another client's failures from the same address lock nobody out."""
    verifier = CountingVerifier(keystore, issuer.issuer, issuer.audience, clock=clock)
    limiter = FailureLimiter(max_failures=3, probe_rate=1.0, probe_burst=2, clock=clock)
    bad = parse(mediamtx_request(ip="203.0.113.7", token=forged(issuer)))
    for _ in range(3):
        assert decide(bad, verifier, lambda jti: False, limiter).reason == "bad_signature"
    assert limiter.blocked("203.0.113.7")
    for _ in range(2):  # the probe allowance: verified, and refused
        assert decide(bad, verifier, lambda jti: False, limiter).reason == "bad_signature"
    assert decide(bad, verifier, lambda jti: False, limiter).reason == "rate_limited"
    calls = verifier.calls
    fresh = parse(mediamtx_request(ip="203.0.113.7", token=issuer.issue_viewer("cam1", "alice").token))
    assert decide(fresh, verifier, lambda jti: False, limiter).reason == "rate_limited", "allowance spent"
    clock.advance(1)
    assert decide(fresh, verifier, lambda jti: False, limiter).allowed, "a probe refilled: a new token gets in"
    assert verifier.calls == calls + 1
    for _ in range(10):  # the known good token passes however busy the guesser is
        assert decide(bad, verifier, lambda jti: False, limiter).reason in ("bad_signature", "rate_limited")
        assert decide(fresh, verifier, lambda jti: False, limiter).allowed
    other = parse(mediamtx_request(ip="203.0.113.8", token=issuer.issue_viewer("cam1", "bob").token))
    assert decide(other, verifier, lambda jti: False, limiter).allowed


def test_brute_force_from_a_blocked_client_is_verified_only_at_the_probe_rate(
    issuer: TokenIssuer, keystore: KeyStore, mediamtx_request: MakeRequest, clock: FakeClock
) -> None:
    verifier = CountingVerifier(keystore, issuer.issuer, issuer.audience, clock=clock)
    limiter = FailureLimiter(max_failures=20, block_s=300, probe_rate=1.0, probe_burst=5, clock=clock)
    valid = issuer.issue_viewer("cam1", "alice").token
    assert decide(parse(mediamtx_request(ip="198.51.100.1", token=valid)), verifier, lambda jti: False,
                  limiter).allowed
    verifier.calls = 0
    reasons = []
    for second in range(60):  # 100 signed guesses a second for a minute
        for _ in range(100):
            guess = parse(mediamtx_request(ip="198.51.100.1", token=forged(issuer)))
            reasons.append(decide(guess, verifier, lambda jti: False, limiter).reason)
        clock.advance(1)
        assert second < 1 or limiter.blocked("198.51.100.1")
    assert "ok" not in reasons
    assert reasons.count("rate_limited") > 5_800
    assert verifier.calls <= 20 + 5 + 60, "failures until the block, then the burst, then one a second"


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

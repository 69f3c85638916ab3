"""Property tests: whatever reaches the hook, it never answers 5xx and never allows without a valid token."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

from framecast.auth import FailureLimiter, KeyStore, TokenIssuer, TokenVerifier, create_app
from framecast.auth.hook import HookRequestError, decide, decode_request

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
HOOK_FIELDS = ("ip", "user", "password", "token", "action", "path", "protocol", "id", "query", "userAgent")
ACTIONS = ("publish", "read", "playback", "api", "metrics", "pprof")
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
field_values = st.one_of(
    st.text(max_size=60),
    st.sampled_from(
        ["", "127.0.0.1", "::1", "<nil>", "cam1", "read", "publish", "api", "rtsp", "hls", "webrtc"]
    ),
    st.none(),
    st.integers(),
    json_values,
)


@pytest.fixture
def http(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app) as client:
        yield client


def post(http: TestClient[Litestar], body: bytes, content_type: str = "application/json") -> int:
    response = http.post("/mediamtx/auth", content=body, headers={"Content-Type": content_type})
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text
    return response.status_code


def decode_segment(segment: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    return decoded


def encode_segment(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


@st.composite
def invalid_tokens(draw: st.DrawFn, valid: str) -> str:
    """A token that must not verify: garbage, or a real one with a changed byte, claim or header."""
    header, payload, signature = valid.split(".")
    kind = draw(st.sampled_from(["garbage", "flip", "claims", "header", "signature", "truncate"]))
    if kind == "garbage":
        return draw(st.text(max_size=200))
    if kind == "flip":
        part = draw(st.sampled_from([0, 1, 2]))
        pieces = [header, payload, signature]
        # Not the last character of a segment: its unused low bits can change without changing the bytes.
        index = draw(st.integers(0, len(pieces[part]) - 2))
        old = pieces[part][index]
        pieces[part] = (
            pieces[part][:index] + draw(st.sampled_from(B64URL.replace(old, ""))) + pieces[part][index + 1 :]
        )
        return ".".join(pieces)
    if kind == "claims":
        claims = decode_segment(payload)
        claims[draw(st.sampled_from(sorted(claims)))] = draw(json_values)
        return f"{header}.{encode_segment(claims)}.{signature}"
    if kind == "header":
        fields = decode_segment(header)
        fields[draw(st.sampled_from(["alg", "kid", "typ", "crit", "jku"]))] = draw(json_values)
        return f"{encode_segment(fields)}.{payload}.{signature}"
    if kind == "signature":
        return f"{header}.{payload}.{draw(st.text(alphabet=B64URL, max_size=100))}"
    return valid[: draw(st.integers(0, len(valid) - 1))]


def test_random_bytes_never_5xx(http: TestClient[Litestar]) -> None:
    @FUZZ
    @given(
        body=st.binary(max_size=2000), content_type=st.sampled_from(["application/json", "text/plain", ""])
    )
    def check(body: bytes, content_type: str) -> None:
        assert post(http, body, content_type) != 200

    check()


def test_random_json_never_5xx(http: TestClient[Litestar]) -> None:
    @FUZZ
    @given(value=json_values)
    def check(value: object) -> None:
        assert post(http, json.dumps(value).encode()) != 200

    check()


def test_random_hook_requests_are_never_allowed_without_a_valid_token(
    http: TestClient[Litestar], issuer: TokenIssuer
) -> None:
    valid = issuer.issue_viewer("cam1", "viewer", ttl=3600).token

    @FUZZ
    @given(
        fields=st.dictionaries(st.sampled_from(HOOK_FIELDS), field_values),
        token=invalid_tokens(valid),
        carrier=st.sampled_from(["token", "password", "query-token", "query-jwt", "none"]),
    )
    def check(fields: dict[str, Any], token: str, carrier: str) -> None:
        body = dict(fields)
        if carrier in ("token", "password"):
            body[carrier] = token
        elif carrier.startswith("query"):
            body["query"] = f"{carrier[6:]}={token}"
        assert post(http, json.dumps(body).encode()) in (400, 401)

    check()


def test_a_valid_viewer_token_is_allowed_only_to_read_its_own_path(
    keystore: KeyStore, verifier: TokenVerifier, issuer: TokenIssuer
) -> None:
    valid = issuer.issue_viewer("cam1", "viewer", ttl=3600).token
    unlimited = create_app(keystore, verifier, lambda jti: False, lambda decision: None, None)

    @FUZZ
    @given(
        action=st.sampled_from(ACTIONS) | st.text(max_size=10),
        path=st.sampled_from(["cam1", "cam10", "Cam1", "", "cam1/x", "x/cam1"]) | st.text(max_size=20),
        protocol=st.sampled_from(["rtsp", "rtmp", "hls", "webrtc", "srt", ""]),
        ip=st.ip_addresses().map(str),
        query=st.text(max_size=40),
    )
    def check(action: str, path: str, protocol: str, ip: str, query: str) -> None:
        body = {
            "ip": ip,
            "user": "",
            "password": "",
            "token": valid,
            "action": action,
            "path": path,
            "protocol": protocol,
            "id": None,
            "query": query,
            "userAgent": "",
        }
        allowed = post(client, json.dumps(body).encode()) == 200
        assert allowed == (action in ("read", "playback") and path == "cam1")

    with TestClient(unlimited) as client:  # no rate limit: its denials would hide the property
        check()


# ----- the soak: many payloads against the decision and the ASGI app, in-process -----------------

FUZZ_EXAMPLES = int(os.environ.get("FRAMECAST_FUZZ_EXAMPLES", "1000"))
"""How many hook payloads the soak tries: 1000 by default (a few seconds); the campaign sets 100000 (minutes)."""
SOAK = settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MEDIAMTX_SHAPE = {"ip": "127.0.0.1", "user": "", "password": "", "token": "", "action": "read", "path": "cam1",
                  "protocol": "rtsp", "id": None, "query": "", "userAgent": ""}


_kinds = st.sampled_from(["invalid", "misplaced", "misshapen", "bytes"])
_raw = st.binary(max_size=300)
_overrides = st.dictionaries(st.sampled_from(HOOK_FIELDS), st.text(max_size=30), max_size=4)
_actions = st.sampled_from(ACTIONS) | st.text(max_size=8)
_protocols = st.sampled_from(["rtsp", "rtmp", "hls", "webrtc", "srt", "moq", ""])
_not_query_protocols = st.sampled_from(["rtsp", "rtmp", "srt", "moq", ""])
_paths = st.sampled_from(["cam1", "", "cam2"])
_carriers = st.sampled_from(["token", "password", "query"])
_query_keys = st.sampled_from(["token", "jwt"])
_fields = st.sampled_from(HOOK_FIELDS)
_wrong_types = st.integers() | st.lists(st.integers(), max_size=2)


@st.composite
def hook_payloads(draw: st.DrawFn, valid: str, invalid: st.SearchStrategy[str]) -> bytes:
    """A body that must not be allowed: an invalid token anywhere, or a valid one where MediaMTX
    never puts it (the query of RTSP/RTMP/SRT/api/metrics/pprof/playback, the password alone),
    or a valid one in a body MediaMTX would not send (a key missing or mistyped); or raw bytes."""
    kind = draw(_kinds)
    if kind == "bytes":
        return draw(_raw)
    body: dict[str, Any] = {**MEDIAMTX_SHAPE, **draw(_overrides)}
    body["action"], body["protocol"], body["path"] = draw(_actions), draw(_protocols), draw(_paths)
    if kind == "invalid":
        token = draw(invalid)
        where = draw(_carriers)
        body[where] = f"{draw(_query_keys)}={token}" if where == "query" else token
    elif kind == "misplaced":
        body["token"] = ""
        if draw(st.booleans()):
            body["password"] = valid
        else:
            body["query"] = f"{draw(_query_keys)}={valid}"
            body["protocol"] = draw(_not_query_protocols)
    else:
        body["token"] = valid
        if draw(st.booleans()):
            del body[draw(_fields)]
        else:
            body[draw(_fields)] = draw(_wrong_types)
    return json.dumps(body).encode()


async def asgi_post(app: Litestar, body: bytes) -> int:
    """One POST straight through the ASGI app: no sockets, no test-client thread."""
    sent = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/mediamtx/auth", "raw_path": b"/mediamtx/auth", "query_string": b"",
             "root_path": "", "headers": [(b"content-type", b"application/json"),
                                          (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 1), "server": ("testserver", 80)}
    await app(scope, receive, send)  # type: ignore[arg-type]
    return status


@pytest.mark.timeout(max(300, FUZZ_EXAMPLES // 50))  # about 3-5 ms a payload on a shared 2-core host
def test_soak_no_payload_is_allowed_or_answered_5xx(
    keystore: KeyStore, verifier: TokenVerifier, issuer: TokenIssuer
) -> None:
    """FRAMECAST_FUZZ_EXAMPLES payloads (1000 in ``make test``; the campaign's 100000 take several
    minute) through the decision function and the ASGI app: no allow, no 5xx."""
    valid = issuer.issue_viewer("cam1", "viewer", ttl=3600).token
    app = create_app(keystore, verifier, lambda jti: False, lambda decision: None, FailureLimiter())
    loop = asyncio.new_event_loop()
    counts = {"requests": 0, "decoded": 0}
    checking = [0.0]

    @SOAK
    @given(body=hook_payloads(valid, invalid_tokens(valid)))
    def check(body: bytes) -> None:
        counts["requests"] += 1
        began = time.perf_counter()
        try:
            request = decode_request(body)
        except HookRequestError:
            pass
        else:
            counts["decoded"] += 1
            assert not decide(request, verifier, lambda jti: False).allowed
        status = loop.run_until_complete(asgi_post(app, body))
        assert 400 <= status < 500, status
        checking[0] += time.perf_counter() - began

    started = time.perf_counter()
    try:
        check()
    finally:
        loop.close()
    print(f"{counts} in {time.perf_counter() - started:.1f} s, {checking[0]:.1f} s of it deciding")
    assert counts["requests"] >= FUZZ_EXAMPLES * 0.9 and counts["decoded"] > 0

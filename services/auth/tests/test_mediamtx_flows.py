"""The hook over HTTP, fed the exact call sequences MediaMTX v1.20 makes (docs/mediamtx.md, "Auth hook" and "JWT")."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from framecast.auth import KeyStore, TokenIssuer
from framecast.proto.messages import AuthDecision

if TYPE_CHECKING:
    from conftest import MakeClaims, MakeRequest

Client = AsyncTestClient[Litestar]
SESSION = "0d6f3c2a-8b1e-4f5a-9c7d-2e4b6a8c0d1f"
CONNECTION = "7a9b1c3d-5e7f-4a1b-8c2d-4e6f8a0b2c4d"


async def ask(client: Client, body: dict[str, Any]) -> int:
    response = await client.post("/mediamtx/auth", json=body)
    if response.status_code == 200:
        assert response.content == b""
    return response.status_code


async def test_rtsp_publish_is_challenged_then_allowed_with_the_token_as_password(
    client: Client, issuer: TokenIssuer, mediamtx_request: MakeRequest, audit_log: list[AuthDecision]
) -> None:
    token = issuer.issue_publisher("cam1", "encoder-1").token
    announce = {"action": "publish", "protocol": "rtsp", "id": SESSION, "userAgent": "Lavf61.7.100"}
    assert await ask(client, mediamtx_request(**announce)) == 401, (
        "the empty first attempt must be challenged"
    )
    retried = mediamtx_request(**announce, user="encoder", password=token, token=token)
    assert await ask(client, retried) == 200
    assert [(a.allowed, a.reason, a.subject) for a in audit_log] == [
        (False, "no_credentials", ""),
        (True, "ok", "encoder-1"),
    ]


async def test_rtsp_read_describe_then_setup(
    client: Client, issuer: TokenIssuer, mediamtx_request: MakeRequest
) -> None:
    token = issuer.issue_viewer("cam1", "viewer").token
    describe = {"action": "read", "protocol": "rtsp", "id": CONNECTION, "userAgent": ""}
    assert await ask(client, mediamtx_request(**describe)) == 401
    assert await ask(client, mediamtx_request(**describe, user="any", password=token, token=token)) == 200
    setup = mediamtx_request(
        action="read", id=SESSION, userAgent="Lavf61.7.100", user="any", password=token, token=token
    )
    assert await ask(client, setup) == 200


async def test_rtsp_token_and_legacy_jwt_query_parameters(
    client: Client, issuer: TokenIssuer, mediamtx_request: MakeRequest
) -> None:
    token = issuer.issue_publisher("cam1", "encoder-1").token
    for query in (f"token={token}", f"jwt={token}"):
        body = mediamtx_request(action="publish", token=token, query=query)
        assert await ask(client, body) == 200


async def test_hls_session_creation_with_a_sorted_re_encoded_query(
    client: Client, issuer: TokenIssuer, mediamtx_request: MakeRequest
) -> None:
    token = issuer.issue_viewer("cam1", "viewer").token
    session = mediamtx_request(
        protocol="hls", id=SESSION, userAgent="Mozilla/5.0", query=f"a=1&token={token}"
    )
    assert await ask(client, session) == 200
    page = mediamtx_request(protocol="hls", id=None, userAgent="", query=f"token={token}&controls=false")
    assert await ask(client, page) == 200
    assert await ask(client, mediamtx_request(protocol="hls", id=SESSION, query="a=1")) == 401


async def test_whep_options_then_post_with_a_bearer_token(
    client: Client, issuer: TokenIssuer, mediamtx_request: MakeRequest
) -> None:
    token = issuer.issue_viewer("cam1", "viewer").token
    options = mediamtx_request(protocol="webrtc", id=None, userAgent="Mozilla/5.0", token=token)
    post = mediamtx_request(protocol="webrtc", id=SESSION, userAgent="Mozilla/5.0", token=token)
    assert await ask(client, options) == 200
    assert await ask(client, post) == 200
    assert await ask(client, {**post, "path": "cam2"}) == 401


async def test_webrtc_page_query_forwarded_to_whep(
    client: Client, issuer: TokenIssuer, mediamtx_request: MakeRequest
) -> None:
    token = issuer.issue_viewer("cam1", "viewer").token
    body = mediamtx_request(protocol="webrtc", id=SESSION, query=f"controls=false&muted=true&token={token}")
    assert await ask(client, body) == 200


async def test_control_api_needs_a_service_token(
    client: Client, issuer: TokenIssuer, mediamtx_request: MakeRequest
) -> None:
    api = {"action": "api", "path": "", "protocol": "", "id": None, "userAgent": ""}
    service = issuer.issue_service("gateway", ["api"]).token
    viewer = issuer.issue_viewer("cam1", "viewer").token
    publisher = issuer.issue_publisher("cam1", "encoder").token
    assert await ask(client, mediamtx_request(**api, token=service)) == 200
    assert await ask(client, mediamtx_request(**api, token=viewer)) == 401
    assert await ask(client, mediamtx_request(**api, token=publisher)) == 401
    assert await ask(client, mediamtx_request(**api)) == 401
    assert await ask(client, mediamtx_request(**{**api, "action": "metrics"}, token=service)) == 401
    assert await ask(client, mediamtx_request(**{**api, "action": "pprof"}, token=service)) == 401


async def test_playback_is_granted_to_viewers(
    client: Client, issuer: TokenIssuer, mediamtx_request: MakeRequest
) -> None:
    token = issuer.issue_viewer("cam1", "viewer").token
    body = mediamtx_request(action="playback", protocol="", id=None, userAgent="", token=token)
    assert await ask(client, body) == 200
    publisher = issuer.issue_publisher("cam1", "encoder").token
    assert await ask(client, {**body, "token": publisher}) == 401


async def test_rtmp_credentials_in_the_query(
    client: Client, issuer: TokenIssuer, mediamtx_request: MakeRequest
) -> None:
    token = issuer.issue_publisher("cam1", "encoder").token
    body = mediamtx_request(
        action="publish", protocol="rtmp", user="x", password=token, token=token, query=f"user=x&pass={token}"
    )
    assert await ask(client, body) == 200


async def test_ipv6_clients(
    client: Client, issuer: TokenIssuer, mediamtx_request: MakeRequest, audit_log: list[AuthDecision]
) -> None:
    token = issuer.issue_viewer("cam1", "viewer").token
    assert await ask(client, mediamtx_request(ip="2001:db8::10", protocol="webrtc", token=token)) == 200
    assert await ask(client, mediamtx_request(ip="::1", token=token)) == 200
    assert [a.ip for a in audit_log] == ["2001:db8::10", "::1"]


async def test_paths_with_slashes(
    client: Client, keystore: KeyStore, make_claims: MakeClaims, mediamtx_request: MakeRequest
) -> None:
    exact = keystore.signing_key().sign(
        make_claims(mediamtx_permissions=[{"action": "read", "path": "cams/lobby/1"}])
    )
    pattern = keystore.signing_key().sign(
        make_claims(mediamtx_permissions=[{"action": "read", "path": "~^cams/lobby/"}])
    )
    assert await ask(client, mediamtx_request(path="cams/lobby/1", token=exact)) == 200
    assert await ask(client, mediamtx_request(path="cams/lobby/2", token=exact)) == 401
    assert await ask(client, mediamtx_request(path="cams/lobby/2", token=pattern)) == 200
    assert await ask(client, mediamtx_request(path="cams/hall/1", token=pattern)) == 401


async def test_each_token_kind_only_does_its_own_action(
    client: Client, issuer: TokenIssuer, mediamtx_request: MakeRequest
) -> None:
    viewer = issuer.issue_viewer("cam1", "viewer").token
    publisher = issuer.issue_publisher("cam1", "encoder").token
    assert await ask(client, mediamtx_request(action="publish", token=viewer)) == 401
    assert await ask(client, mediamtx_request(action="read", token=publisher)) == 401
    assert await ask(client, mediamtx_request(action="publish", token=publisher)) == 200


async def test_go_json_escapes_in_the_raw_body(client: Client, issuer: TokenIssuer) -> None:
    token = issuer.issue_viewer("cam1", "viewer").token
    body = (
        '{"ip":"127.0.0.1","user":"","password":"","token":"","action":"read","path":"cam1",'
        f'"protocol":"hls","id":"{SESSION}","query":"a=1\\u0026token={token}","userAgent":"Mozilla/5.0"}}'
    )
    response = await client.post(
        "/mediamtx/auth",
        content=body.encode(),
        headers={
            "Content-Type": "application/json",
            "User-Agent": "Go-http-client/1.1",
            "Accept-Encoding": "gzip",
        },
    )
    assert response.status_code == 200


async def test_revoked_tokens_are_denied(
    client: Client,
    issuer: TokenIssuer,
    mediamtx_request: MakeRequest,
    revoked: set[str],
    audit_log: list[AuthDecision],
) -> None:
    token = issuer.issue_viewer("cam1", "viewer").token
    assert await ask(client, mediamtx_request(token=token)) == 200
    revoked.add(audit_log[-1].jti)
    assert await ask(client, mediamtx_request(token=token)) == 401
    assert audit_log[-1].reason == "revoked"


async def test_repeated_failures_block_guessing_but_not_the_valid_tokens_behind_the_same_address(
    client: Client, issuer: TokenIssuer, mediamtx_request: MakeRequest, audit_log: list[AuthDecision]
) -> None:
    """Viewers behind one NAT share an address: one client's failures must not lock the others out."""
    token = issuer.issue_viewer("cam1", "viewer").token
    for _ in range(20):
        assert await ask(client, mediamtx_request(ip="203.0.113.9", token="guess")) == 401
    assert await ask(client, mediamtx_request(ip="203.0.113.9", token=token)) == 200
    header, payload, _ = token.split(".")
    forged = f"{header}.{payload}.{issuer.issue_viewer('cam2', 'x').token.split('.')[2]}"
    for _ in range(20):
        assert await ask(client, mediamtx_request(ip="203.0.113.9", token=forged)) == 401
    assert audit_log[-1].reason == "rate_limited"
    assert await ask(client, mediamtx_request(ip="203.0.113.9", token=token)) == 200
    assert await ask(client, mediamtx_request(ip="203.0.113.10", token=token)) == 200


async def test_successes_are_never_limited(
    client: Client, issuer: TokenIssuer, mediamtx_request: MakeRequest
) -> None:
    token = issuer.issue_viewer("cam1", "viewer").token
    for _ in range(100):
        assert await ask(client, mediamtx_request(token=token)) == 200


async def test_a_denial_names_its_reason_for_mediamtx_logs(
    client: Client, mediamtx_request: MakeRequest
) -> None:
    response = await client.post("/mediamtx/auth", json=mediamtx_request(token="nope"))
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": "malformed",
    }

"""The app under a real uvicorn on loopback, called the way MediaMTX calls it: one new connection per POST."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
import uvicorn
from litestar import Litestar

from framecast.auth import TokenIssuer
from framecast.proto.messages import AuthDecision

if TYPE_CHECKING:
    from conftest import MakeRequest


@pytest.fixture
async def server(app: Litestar) -> AsyncIterator[tuple[str, int]]:
    """uvicorn serving ``app`` on a free 127.0.0.1 port.

    The socket is listening before the server task starts, so a client may connect at once:
    the kernel queues it until uvicorn accepts. Nothing waits on a timer.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    host, port = sock.getsockname()
    instance = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    task = asyncio.create_task(instance.serve(sockets=[sock]))
    try:
        yield host, port
    finally:
        instance.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()


async def go_post(address: tuple[str, int], body: bytes) -> tuple[int, bytes]:
    """One hook call as Go's ``http.Client.Post`` sends it from a fresh transport."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), timeout=5)
    try:
        head = (
            "POST /mediamtx/auth HTTP/1.1\r\n"
            f"Host: {address[0]}:{address[1]}\r\n"
            "User-Agent: Go-http-client/1.1\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Content-Type: application/json\r\n"
            "Accept-Encoding: gzip\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
        headers: dict[str, str] = {}
        while (line := await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        content = await asyncio.wait_for(
            reader.readexactly(int(headers.get("content-length", "0"))), timeout=5
        )
        return int(status_line.split()[1]), content
    finally:
        writer.close()
        await writer.wait_closed()


def go_json(body: dict[str, Any]) -> bytes:
    """JSON as Go's encoding/json writes it: compact, with &, < and > escaped."""
    text = json.dumps(body, separators=(",", ":"))
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e").encode()


async def test_rtsp_challenge_flow_over_real_http(
    server: tuple[str, int], issuer: TokenIssuer, mediamtx_request: MakeRequest, audit_log: list[AuthDecision]
) -> None:
    token = issuer.issue_publisher("cam1", "encoder-1").token
    announce = {"action": "publish", "id": "3c1f0e2d-4b5a-4978-8c6d-5e4f3a2b1c0d", "query": "a=1&b=2"}
    status, content = await go_post(server, go_json(mediamtx_request(**announce)))
    assert status == 401 and b"no_credentials" in content
    status, content = await go_post(
        server, go_json(mediamtx_request(**announce, user="e", password=token, token=token))
    )
    assert (status, content) == (200, b"")
    assert [a.reason for a in audit_log] == ["no_credentials", "ok"]


async def test_concurrent_hook_calls_on_fresh_connections(
    server: tuple[str, int], issuer: TokenIssuer, mediamtx_request: MakeRequest
) -> None:
    viewer = issuer.issue_viewer("cam1", "viewer").token
    bodies = [mediamtx_request(protocol="webrtc", token=viewer, path=f"cam{i % 2 + 1}") for i in range(24)]
    results = await asyncio.gather(*(go_post(server, go_json(b)) for b in bodies))
    assert [status for status, _ in results] == [200 if i % 2 == 0 else 401 for i in range(24)]


async def test_garbage_over_real_http_is_a_4xx(server: tuple[str, int]) -> None:
    for body in (b"{", b"\x00" * 100, b'{"ip":"::1","action":"read","id":1}'):
        status, content = await go_post(server, body)
        assert status == 400
        assert json.loads(content)["status"] == 400


async def test_jwks_over_real_http_verifies_our_tokens_as_mediamtx_would(
    server: tuple[str, int], issuer: TokenIssuer
) -> None:
    token = issuer.issue_viewer("cam1", "viewer").token
    async with httpx.AsyncClient(base_url=f"http://{server[0]}:{server[1]}", timeout=5) as client:
        response = await client.get("/.well-known/jwks.json")
        assert (await client.get("/healthz")).status_code == 200
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert "max-age" in response.headers["cache-control"]
    header = jwt.get_unverified_header(token)
    (jwk,) = [k for k in response.json()["keys"] if k["kid"] == header["kid"]]
    assert jwk["alg"] == header["alg"], "MediaMTX's keyfunc refuses a JWK whose alg differs from the token's"
    claims = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=[jwk["alg"]],
        audience="mediamtx",
        issuer="framecast-auth",
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},  # the test clock is fake
    )
    assert claims["mediamtx_permissions"][0] == {"action": "read", "path": "cam1"}

"""The HTTP server every HTTP service runs: a client that is slow to send its request is cut off."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from framecast.runtime import http


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_a_client_dribbling_its_headers_is_disconnected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "HEADER_TIMEOUT_S", 0.5)
    async with http.http_server(hello, "127.0.0.1:0", variable="FRAMECAST_TEST_ADDR") as url:
        host, port = url.removeprefix("http://").split(":")
        # a well-behaved client, twice on one connection: the deadline restarts after each response
        reader, writer = await asyncio.open_connection(host, int(port))
        for _ in range(2):
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await asyncio.wait_for(reader.readuntil(b"ok"), 5)).startswith(b"HTTP/1.1 200")
        writer.close()
        # a slowloris: one header byte at a time, never the end of the head
        reader, writer = await asyncio.open_connection(host, int(port))
        started = asyncio.get_running_loop().time()

        async def dribble() -> None:
            with contextlib.suppress(ConnectionError):  # until the server hangs up
                for byte in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.05)  # the attack's pace, not synchronisation

        dribbling = asyncio.create_task(dribble())
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the server closed the connection
        closed_after = asyncio.get_running_loop().time() - started
        dribbling.cancel()
        writer.close()
    assert 0.4 < closed_after < 3, closed_after

"""A real MediaMTX for the tests that run wherever a binary is present.

It is started with the configuration ``framecast up`` writes (every access through the auth
hook), on free loopback ports, or with ``authMethod: jwt`` against the auth service's JWKS.
Between MediaMTX and the hook sits a recorder that keeps every payload MediaMTX posts, so tests
can compare them with what the stand-ins send. Elsewhere tests stand in for it with peers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from framecast.devstack import mediamtx
from tests.support.rtsp import free_port, free_ports

__all__ = ["BINARY", "HookRecorder", "RealMediaMTX", "needs_mediamtx", "real_mediamtx"]

BINARY = mediamtx.find_mediamtx()

#: ``pytestmark = needs_mediamtx`` or a ``pytest.param(..., marks=needs_mediamtx)``.
needs_mediamtx = [
    pytest.mark.mediamtx,
    pytest.mark.skipif(BINARY is None, reason="no mediamtx binary here (PATH, FRAMECAST_MEDIAMTX_BIN or "
                       "`framecast mediamtx install`)"),
]


class HookRecorder:
    """An HTTP hop between MediaMTX and the auth hook: forwards each POST, keeps its JSON body
    (in MediaMTX's key order) and the hook's status."""

    def __init__(self, hook_url: str) -> None:
        self.hook_url = hook_url
        self.port = free_port()
        self.calls: list[dict[str, Any]] = []
        self.statuses: list[int] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mediamtx/auth"

    async def __aenter__(self) -> HookRecorder:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            length = next(int(line.split(":", 1)[1]) for line in head.split("\r\n")
                          if line.lower().startswith("content-length:"))
            body = await reader.readexactly(length)
            self.calls.append(json.loads(body))
            async with httpx.AsyncClient(timeout=10) as client:
                reply = await client.post(self.hook_url, content=body, headers={"Content-Type": "application/json"})
            self.statuses.append(reply.status_code)
            writer.write(f"HTTP/1.1 {reply.status_code} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".encode())
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, StopIteration, ValueError, httpx.HTTPError):
            pass
        finally:
            writer.close()

    def of(self, **fields: Any) -> list[dict[str, Any]]:
        """The recorded payloads whose fields have these values."""
        return [call for call in self.calls if fields.items() <= call.items()]


@dataclass
class RealMediaMTX:
    """One MediaMTX process on free loopback ports; ``restart()`` keeps the ports."""

    conf: Path
    log: Path
    ports: dict[str, int] = field(default_factory=lambda: dict(zip(
        ("rtsp", "api", "whep", "hls", "udp"), free_ports(5), strict=True)))
    process: asyncio.subprocess.Process | None = None
    recorder: HookRecorder | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Settings overridden from the environment (``MTX_...``), as a deployment does per site."""

    @property
    def rtsp(self) -> str:
        return f"rtsp://127.0.0.1:{self.ports['rtsp']}"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    @property
    def whep(self) -> str:
        return f"http://127.0.0.1:{self.ports['whep']}"

    @property
    def hls(self) -> str:
        return f"http://127.0.0.1:{self.ports['hls']}"

    async def start(self) -> None:
        assert BINARY is not None
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                BINARY, str(self.conf), stdout=log, stderr=asyncio.subprocess.STDOUT, env={**os.environ, **self.env})

        async def listening() -> None:
            while True:
                if self.process is not None and self.process.returncode is not None:
                    raise AssertionError(f"mediamtx exited: {self.log.read_text()[-2000:]}")
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", self.ports["rtsp"])
                    writer.close()
                    return
                except OSError:
                    await asyncio.sleep(0.05)  # polling a port: nothing to wait on

        await asyncio.wait_for(listening(), 15)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            await self.process.wait()

    async def restart(self) -> None:
        await self.stop()
        await self.start()


@contextlib.asynccontextmanager
async def real_mediamtx(tmp_path: Path, auth_addr: str, *, hls_variant: str = "fmp4",
                        auth: str = "http", record: bool = False, origin: str | None = None,
                        relay_secret: str = "") -> AsyncIterator[RealMediaMTX]:
    """MediaMTX asking the hook at ``auth_addr`` (through a :class:`HookRecorder` when ``record``;
    it is then ``server.recorder``), or verifying JWTs itself against its JWKS (``auth="jwt"``).
    With ``origin`` (an RTSP base) it is an edge pulling from there, with ``relay_secret`` given
    as a site does: in MTX_PATHDEFAULTS_SOURCE (``mediamtx.edge_source``)."""
    async with contextlib.AsyncExitStack() as stack:
        hook = f"http://{auth_addr}/mediamtx/auth"
        recorder = None
        if record:
            recorder = await stack.enter_async_context(HookRecorder(hook))
            hook = recorder.url
        # A free port is only free until someone takes it: try again with fresh ones
        for attempt in range(1, 4):
            server = RealMediaMTX(tmp_path / "mediamtx.yml", tmp_path / f"mediamtx-{attempt}.log")
            server.conf.write_text(mediamtx.config(
                auth_url=hook, rtsp_port=server.ports["rtsp"], api_port=server.ports["api"],
                whep_port=server.ports["whep"], hls_port=server.ports["hls"], webrtc_udp_port=server.ports["udp"],
                hls_variant=hls_variant, origin=origin,
                jwks_url=f"http://{auth_addr}/.well-known/jwks.json" if auth == "jwt" else None))
            server.recorder = recorder
            if origin is not None and relay_secret:
                server.env["MTX_PATHDEFAULTS_SOURCE"] = mediamtx.edge_source(origin, relay_secret)
            try:
                await server.start()
            except AssertionError:
                if attempt == 3 or "address already in use" not in server.log.read_text(errors="replace"):
                    raise
                continue
            break
        stack.push_async_callback(server.stop)
        yield server

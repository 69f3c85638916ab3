"""A real MediaMTX for the tests that run wherever a binary is present.

It is started with the configuration ``framecast up`` writes (every access through the auth
hook), on free loopback ports. Elsewhere tests stand in for it with protocol peers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from framecast.devstack import mediamtx
from tests.support.rtsp import free_port

__all__ = ["BINARY", "needs_mediamtx", "real_mediamtx"]

BINARY = mediamtx.find_mediamtx()

#: ``pytestmark = needs_mediamtx`` or a ``pytest.param(..., marks=needs_mediamtx)``.
needs_mediamtx = [
    pytest.mark.mediamtx,
    pytest.mark.skipif(BINARY is None, reason="no mediamtx binary here (PATH, FRAMECAST_MEDIAMTX_BIN or "
                       "`framecast mediamtx install`)"),
]


@contextlib.asynccontextmanager
async def real_mediamtx(tmp_path: Path, auth_addr: str) -> AsyncIterator[dict[str, int]]:
    """MediaMTX asking the hook at ``auth_addr``; yields its ports (rtsp, api, whep, hls, udp)."""
    ports = {"rtsp": free_port(), "api": free_port(), "whep": free_port(), "hls": free_port(), "udp": free_port()}
    conf = tmp_path / "mediamtx.yml"
    conf.write_text(mediamtx.config(auth_url=f"http://{auth_addr}/mediamtx/auth", rtsp_port=ports["rtsp"],
                                    api_port=ports["api"], whep_port=ports["whep"], hls_port=ports["hls"],
                                    webrtc_udp_port=ports["udp"]))
    assert BINARY is not None
    process = await asyncio.create_subprocess_exec(BINARY, str(conf), stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.DEVNULL)
    try:
        async def listening() -> None:
            while True:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", ports["rtsp"])
                    writer.close()
                    return
                except OSError:
                    await asyncio.sleep(0.05)  # polling a port: nothing to wait on

        await asyncio.wait_for(listening(), 15)
        yield ports
    finally:
        process.terminate()
        await process.wait()

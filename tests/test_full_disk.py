"""A full disk under the auth service's key directory: one clear line, nothing half-written, no outage.

The disk is a real tmpfs filled to its last page (tests/support/full_disk.py), so the errors are
the kernel's own ENOSPC at ``write``, where a key file was already created.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from framecast.auth import KeyStore
from framecast.devstack.nats import NatsServer
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import TokenIssued, TokenRequest
from tests.support import full_disk
from tests.support.rtsp import free_port

pytestmark = pytest.mark.skipif(not full_disk.available(), reason=full_disk.REASON)

FRAMECAST = str(Path(sys.executable).parent / "framecast")
WEEKS_AGO = 15 * 86400.0


def seeded_keys(directory: Path, *, age_s: float = 0.0) -> str:
    """A key directory holding one signing key made ``age_s`` ago; returns its kid."""
    return KeyStore(directory, clock=lambda: time.time() - age_s).signing_key().kid


def test_rotating_a_key_on_a_full_disk_says_so_in_one_line_and_keeps_the_keys(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    seeded_keys(seed)
    disk = tmp_path / "disk"
    keys = disk / "keys"
    check = f"ls -A {keys}"  # what the key directory holds after the failed rotation, seen inside
    argv = ["sh", "-c", f"{FRAMECAST} auth rotate-key; code=$?; {check} >&2; exit $code"]
    env = dict(os.environ, FRAMECAST_AUTH_KEY_DIR=str(keys), FRAMECAST_NATS_URL="nats://127.0.0.1:9")
    result = subprocess.run(full_disk.on_full_disk(argv, disk, seed=seed, into="keys"), env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    error, *listing = result.stderr.strip().splitlines()
    assert error.startswith(f"framecast auth: {keys}/") and error.endswith(": cannot write: No space left on device")
    assert sorted(listing) == sorted(p.name for p in seed.iterdir()), "no half-written key is left behind"
    assert result.stdout == ""


async def test_the_running_service_keeps_signing_when_its_rotation_hits_a_full_disk(
    nats_server: NatsServer, bus: Bus, tmp_path: Path, stream_id: str,
) -> None:
    seed = tmp_path / "seed"
    kid = seeded_keys(seed, age_s=WEEKS_AGO)  # due for its successor: the service rotates at start
    disk = tmp_path / "disk"
    addr = f"127.0.0.1:{free_port()}"
    env = dict(os.environ, FRAMECAST_AUTH_KEY_DIR=str(disk / "keys"), FRAMECAST_NATS_URL=nats_server.url,
               FRAMECAST_AUTH_ADDR=addr, FRAMECAST_MEDIAMTX_API=f"http://127.0.0.1:{free_port()}",
               FRAMECAST_INSTANCE_ID=f"auth-full-disk-{stream_id}")
    argv = full_disk.on_full_disk([FRAMECAST, "auth"], disk, seed=seed, into="keys")
    process = await asyncio.create_subprocess_exec(*argv, env=env, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    lines: list[str] = []
    try:
        async def logged(text: str) -> None:
            while not any(text in line for line in lines):
                line = await process.stderr.readline()  # type: ignore[union-attr]
                assert line, f"auth exited ({await process.wait()}) before logging {text!r}: {lines}"
                lines.append(line.decode())

        await asyncio.wait_for(logged("cannot maintain the signing keys"), 30)
        await asyncio.wait_for(logged("auth hook on"), 30)
        warning = next(line for line in lines if "cannot maintain the signing keys" in line)
        assert "No space left on device" in warning and "the current key goes on signing" in warning

        issued = await bus.request(subjects.AUTH_TOKEN_ISSUE, TokenRequest(role="viewer", stream_id=stream_id),
                                   TokenIssued, service="auth")
        assert issued.kid == kid
        body = {"ip": "127.0.0.1", "user": "", "password": "", "token": issued.token, "action": "read",
                "path": stream_id, "protocol": "webrtc", "id": None, "query": "", "userAgent": ""}
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await client.post(f"http://{addr}/mediamtx/auth", json=body)).status_code == 200
            jwks = (await client.get(f"http://{addr}/.well-known/jwks.json")).json()
        assert [key["kid"] for key in jwks["keys"]] == [kid]
        inside = Path(f"/proc/{process.pid}/root{disk}/keys")
        assert sorted(p.name for p in inside.iterdir()) == sorted(p.name for p in seed.iterdir())
    finally:
        if process.returncode is None:
            process.terminate()
        assert await asyncio.wait_for(process.wait(), 30) == 0
    assert not any("Traceback" in line for line in lines)

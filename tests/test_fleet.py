"""Encoders on several hosts: placement, the transport it implies, failover to another host.

"Another host" is an encoder with another host identity (``FRAMECAST_HOST_ID``), so shared
memory is not offered between them; everything else is real: nats-server, the encoder services
(one a separate process, killed by signal), FFmpeg, an RTSP receiver per stream, and CV workers
using the SDK with its default ``transport="auto"`` - the same producer code whatever the fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from nats.aio.msg import Msg

from framecast.capture.producer import HEARTBEAT_TIMEOUT_S
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import EncoderHeartbeat
from framecast.proto.states import StreamState as S
from framecast.proto.store import StateStore
from tests.support.rtsp import RtspReceiver
from tests.support.services import cv_worker, running, wait_for_state

W, H = 320, 240
FRAMECAST = str(Path(sys.executable).parent / "framecast")


def encoder_settings(nats: NatsServer, rx: RtspReceiver, host: str, **fields: object) -> EncoderSettings:
    return EncoderSettings(nats_url=nats.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{rx.port}", publish_auth="none",
                           host_id=host, **fields)  # type: ignore[arg-type]


@asynccontextmanager
async def encoder_process(nats: NatsServer, rx: RtspReceiver, host: str, name: str) -> AsyncIterator[
        asyncio.subprocess.Process]:
    """An encoder in its own process (so it can be killed like a lost host)."""
    env = dict(os.environ, FRAMECAST_NATS_URL=nats.url, FRAMECAST_INSTANCE_ID=name, FRAMECAST_HOST_ID=host,
               FRAMECAST_MEDIAMTX_RTSP=f"rtsp://127.0.0.1:{rx.port}", FRAMECAST_PUBLISH_AUTH="none",
               FRAMECAST_HEALTH_ADDR="")
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "framecast.encoder", env=env,
                                                   stderr=asyncio.subprocess.DEVNULL)
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def heard_from(bus: Bus, encoder_id: str, timeout: float = 30) -> None:
    """Until ``encoder_id`` heartbeats (a separate process takes a moment to start)."""
    beat: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def on_heartbeat(_message: EncoderHeartbeat, _msg: Msg) -> None:
        if not beat.done():
            beat.set_result(None)

    sub = await bus.subscribe(subjects.encoder_heartbeat(encoder_id), EncoderHeartbeat, on_heartbeat)
    try:
        await asyncio.wait_for(beat, timeout)
    finally:
        await sub.unsubscribe()


async def test_a_stream_goes_to_an_encoder_elsewhere_over_nats_and_to_one_of_its_own_host_by_shm(
    nats_server: NatsServer, bus: Bus, stream_id: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRAMECAST_HOST_ID", "camera-host")  # where the CV workers run
    store = await StateStore.open(bus, "test")
    remote, local = f"{stream_id}-r", f"{stream_id}-l"
    async with (
        RtspReceiver(width=W, height=H, path=remote) as rx_remote,
        RtspReceiver(width=W, height=H, path=local) as rx_local,
        running("encoder", encoder_settings(nats_server, rx_remote, "gpu-host"), encoder_lifespan,
                instance=f"far-{stream_id}"),
        cv_worker(nats_server.url, remote, width=W, height=H),
    ):
        record = await wait_for_state(store, remote, S.PUBLISHING, timeout=30)
        assert (record.encoder_id, record.transport) == (f"far-{stream_id}", "nats")
        assert record.placement == (f"far-{stream_id} on host gpu-host (frames over NATS: no encoder runs on this "
                                    "host), 8 of 8 slots free")
        await rx_remote.wait_frames(10, timeout=20)

        # an encoder with room joins on the workers' own host: the next stream goes there, by shm
        near = encoder_settings(nats_server, rx_local, "camera-host")
        async with running("encoder", near, encoder_lifespan, instance=f"near-{stream_id}"), \
                cv_worker(nats_server.url, local, width=W, height=H):
            record = await wait_for_state(store, local, S.PUBLISHING, timeout=30)
            assert (record.encoder_id, record.transport) == (f"near-{stream_id}", "shm")
            assert record.placement == f"near-{stream_id} on this host (shared memory), 8 of 8 slots free"
            await rx_local.wait_frames(10, timeout=20)
        remote_record = await store.get(remote)
        assert remote_record is not None and remote_record.encoder_id == f"far-{stream_id}", "nothing moved"


async def test_when_its_hosts_encoder_is_lost_the_stream_moves_to_another_host_over_nats(
    nats_server: NatsServer, bus: Bus, stream_id: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRAMECAST_HOST_ID", "camera-host")
    store = await StateStore.open(bus, "test")
    async with (
        RtspReceiver(width=W, height=H, path=stream_id) as rx,
        encoder_process(nats_server, rx, "camera-host", f"near-{stream_id}") as near,
        running("encoder", encoder_settings(nats_server, rx, "spare-host"), encoder_lifespan,
                instance=f"far-{stream_id}"),
    ):
        await heard_from(bus, f"near-{stream_id}")
        async with cv_worker(nats_server.url, stream_id, width=W, height=H):
            await moves_when_lost(store, rx, near, stream_id)


async def moves_when_lost(store: StateStore, rx: RtspReceiver, near: asyncio.subprocess.Process,
                          stream_id: str) -> None:
    """The stream publishes from ``near`` (this host, shm); ``near`` is killed; it publishes again
    from the encoder on the other host, over NATS, the producer untouched."""
    record = await wait_for_state(store, stream_id, S.PUBLISHING, timeout=30)
    assert (record.encoder_id, record.transport) == (f"near-{stream_id}", "shm")
    near.send_signal(signal.SIGKILL)
    lost_at = time.monotonic()
    record = await wait_for_state(store, stream_id, S.PUBLISHING, timeout=20,
                                  where=lambda r: r.encoder_id == f"far-{stream_id}")
    live_again = time.monotonic() - lost_at
    print(f"encoder host lost -> publishing again on another host: {live_again:.2f} s")
    assert record.transport == "nats", "the producer switched to NATS by itself"
    assert record.placement.startswith(f"far-{stream_id} on host spare-host (frames over NATS")
    await rx.wait_connected(2, timeout=20)  # the other host's FFmpeg publishes
    await rx.wait_frames(rx.received + 10, timeout=20)


async def test_draining_an_encoder_moves_its_stream_and_the_viewer_misses_little(
    nats_server: NatsServer, bus: Bus, stream_id: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FRAMECAST_HOST_ID", "camera-host")
    store = await StateStore.open(bus, "test")
    first, second = f"a-{stream_id}", f"b-{stream_id}"
    async with (
        RtspReceiver(width=W, height=H, path=stream_id) as rx,
        running("encoder", encoder_settings(nats_server, rx, "camera-host"), encoder_lifespan, instance=first),
        cv_worker(nats_server.url, stream_id, width=W, height=H),
    ):
        await wait_for_state(store, stream_id, S.PUBLISHING, timeout=30)
        await rx.wait_frames(10, timeout=20)
        async with running("encoder", encoder_settings(nats_server, rx, "camera-host"), encoder_lifespan,
                           instance=second):
            await heard_from(bus, second)
            drain = await asyncio.create_subprocess_exec(
                FRAMECAST, "encoder", "drain", first, "--timeout", "30",
                env=dict(os.environ, FRAMECAST_NATS_URL=nats_server.url),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            drained_at = time.monotonic()
            out, err = await asyncio.wait_for(drain.communicate(), 60)
            assert drain.returncode == 0, err.decode()
            assert out.decode().splitlines() == [
                f"draining {first}: it takes no new stream; handing over 1 stream(s): {stream_id}",
                f"{first} is empty; stop it when you like (it takes no new stream until restarted)"]
            assert err == b""
            await wait_for_state(store, stream_id, S.PUBLISHING, timeout=20, where=lambda r: r.encoder_id == second)
            moved_in = time.monotonic() - drained_at
            await rx.wait_connected(2, timeout=20)
            await rx.wait_frames(rx.received + 30, timeout=20)
            arrivals = [frame.arrived for frame in rx.frames if frame.arrived >= drained_at - 1]
            gap = max(b - a for a, b in zip(arrivals, arrivals[1:], strict=False))
            print(f"drain -> publishing on the other encoder: {moved_in:.2f} s; longest gap between frames "
                  f"at the receiver: {gap * 1000:.0f} ms")
            assert gap < 3.0, "the hand-over must not leave viewers without pictures for long"
            reasons = []
            async for _, event in store.history(stream_id):
                assert event.state not in (S.STOPPED, S.FAILED), f"the stream ended: {event}"
                reasons.append(event.reason)
                if event.encoder_id == second and event.state is S.PUBLISHING:
                    break
            assert f"taken over from encoder {first}" in reasons


async def test_an_encoder_stopping_hands_its_stream_over_without_waiting_for_the_heartbeat_timeout(
    nats_server: NatsServer, bus: Bus, stream_id: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rolling upgrade stops encoders one by one: each one's streams move at once, not after
    the producer has missed its heartbeats."""
    monkeypatch.setenv("FRAMECAST_HOST_ID", "camera-host")
    store = await StateStore.open(bus, "test")
    first, second = f"a-{stream_id}", f"b-{stream_id}"
    async with contextlib.AsyncExitStack() as stack:
        rx = await stack.enter_async_context(RtspReceiver(width=W, height=H, path=stream_id))
        stopped = contextlib.AsyncExitStack()  # ``first``: the only encoder when the stream starts
        await stopped.enter_async_context(running(
            "encoder", encoder_settings(nats_server, rx, "camera-host"), encoder_lifespan, instance=first))
        try:
            await stack.enter_async_context(cv_worker(nats_server.url, stream_id, width=W, height=H))
            record = await wait_for_state(store, stream_id, S.PUBLISHING, timeout=30)
            assert record.encoder_id == first
            await stack.enter_async_context(running(
                "encoder", encoder_settings(nats_server, rx, "camera-host"), encoder_lifespan, instance=second))
            await heard_from(bus, second)
        finally:
            stopping_at = time.monotonic()
            await stopped.aclose()
        taken = await wait_for_state(store, stream_id, S.STARTING, S.PUBLISHING, timeout=20,
                                     where=lambda r: r.encoder_id == second)
        claimed_in = time.monotonic() - stopping_at
        await wait_for_state(store, stream_id, S.PUBLISHING, timeout=20, where=lambda r: r.encoder_id == second)
        live_in = time.monotonic() - stopping_at
        print(f"encoder stopped -> claimed elsewhere {claimed_in:.2f} s, publishing {live_in:.2f} s")
        assert taken.reason == f"taken over from encoder {first}" or taken.state is S.PUBLISHING
        assert claimed_in < HEARTBEAT_TIMEOUT_S, "the producer did not wait for the heartbeat timeout"

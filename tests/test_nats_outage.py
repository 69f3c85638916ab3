"""A NATS outage while a stream is on air: the stream stays on air, and nothing is lost.

An FFmpeg that dies during the outage is published again as soon as NATS is back (with the
publish token it already holds if auth cannot issue one yet): until then the auth hook cannot be
sure it has seen every revocation, and fails closed (docs/reliability.md).

Real processes throughout: a nats-server that is stopped and started again on the same port
and store, the auth service, the encoder publishing with its token to an ingest that asks the
hook as MediaMTX does, and a CV worker's SDK producer sending frames the whole time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from framecast.auth import AuthSettings
from framecast.auth import lifespan as auth_lifespan
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.proto.bus import Bus
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from tests.support.rtsp import RtspReceiver, free_port
from tests.support.services import cv_worker, eventually, running, wait_for_state

S = StreamState


def ffmpeg_publishing(stream_id: str) -> int | None:
    """The pid of the FFmpeg publishing ``stream_id`` (its URL is in its command line)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if f"/{stream_id}?token=".encode() in (entry / "cmdline").read_bytes():
                    return int(entry.name)
    return None


async def test_a_stream_stays_on_air_through_a_nats_outage_and_no_event_is_lost(
    stream_id: str, tmp_path: Path
) -> None:
    server = await NatsServer().start()
    auth_addr = f"127.0.0.1:{free_port()}"
    try:
        async with (
            running("auth", AuthSettings(nats_url=server.url, auth_addr=auth_addr,
                                         auth_key_dir=str(tmp_path / "keys")), auth_lifespan),
            RtspReceiver(width=320, height=240, path=stream_id, hook_url=f"http://{auth_addr}/mediamtx/auth") as rx,
            running("encoder", EncoderSettings(nats_url=server.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{rx.port}"),
                    encoder_lifespan),
            cv_worker(server.url, stream_id),
        ):
            bus = await Bus.connect(server.url, client_id="test-outage")
            store = await StateStore.open(bus, "test")
            try:
                await wait_for_state(store, stream_id, S.PUBLISHING, timeout=30)
                await rx.wait_frames(30, timeout=20)

                await server.stop(keep_store=True)  # NATS is gone
                seen = rx.received
                await rx.wait_frames(seen + 60, timeout=15)  # still on air: two more seconds of video
                pid = ffmpeg_publishing(stream_id)
                assert pid is not None
                os.kill(pid, signal.SIGKILL)  # and FFmpeg dies while NATS is away: the ingest's hook
                # cannot be sure of the revocations meanwhile, so the new FFmpeg gets in once NATS is back

                await server.start()  # NATS is back: the stream publishes again, and what happened
                await rx.wait_connected(2, timeout=30)  # meanwhile is recorded
                seen = rx.received
                await rx.wait_frames(seen + 30, timeout=15)
                moves: list[tuple[S, str]] = []

                async def recorded() -> None:
                    async for _, event in store.history(stream_id):
                        moves.append((event.state, event.reason))
                        if [state for state, _ in moves][-2:] == [S.STALLED, S.PUBLISHING]:
                            return

                try:
                    await asyncio.wait_for(recorded(), 30)
                except TimeoutError:
                    raise AssertionError(f"the moves made during the outage were not recorded: {moves}") from None
                # the FFmpeg that died during the outage, and the one that took over, in order
                assert [state for state, _ in moves] == [S.REQUESTED, S.STARTING, S.PUBLISHING, S.STALLED,
                                                         S.PUBLISHING], moves
                assert "killed by SIGKILL" in moves[3][1]
                record = await store.get(stream_id)
                assert record is not None and record.state is S.PUBLISHING
                assert record.reason == "publishing with libx264"  # true, not a stale excuse
                await eventually(lambda: rx.connections == 2, "no third connection", 1)
            finally:
                await bus.close()
    finally:
        await server.stop()

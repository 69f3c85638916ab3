"""What happens when a producer or an encoder dies: the stream says so, another encoder takes
over, nothing leaks (shared memory, FFmpeg processes)."""

from __future__ import annotations

import asyncio
import glob
import os
import signal
import sys
import time
from pathlib import Path

import framecast.capture
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.frames.pattern import TestPattern
from framecast.proto.bus import Bus
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from tests.support.rtsp import RtspReceiver
from tests.support.services import eventually, running, wait_for_state

S = StreamState
W, H = 320, 240

PRODUCER = """
import sys, time
import framecast.capture
from framecast.frames.pattern import TestPattern
stream_id, url = sys.argv[1], sys.argv[2]
pattern = TestPattern(320, 240)
with framecast.capture.open(stream_id, width=320, height=240, fps=30, nats_url=url) as stream:
    print("open", flush=True)
    n = 0
    while True:
        n += 1
        stream.send(pattern.render(n, int(time.time() * 1000)))
        time.sleep(1 / 30)
"""


def _ffmpeg_publishing(stream_id: str) -> list[int]:
    """Pids of FFmpeg processes publishing ``stream_id`` (read from /proc)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        publisher = b"pipe:0" in args  # the receiver standing in for MediaMTX is an FFmpeg too
        if publisher and b"ffmpeg" in args[0] and any(f"/{stream_id}".encode() in a for a in args):
            pids.append(int(cmdline.parent.name))
    return pids


async def test_killed_producer_stalls_then_fails_and_its_ring_is_reclaimed(
    nats_server: NatsServer, bus: Bus, stream_id: str
) -> None:
    store = await StateStore.open(bus, "test")
    async with RtspReceiver(width=W, height=H, path=stream_id) as rx:
        settings = EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{rx.port}",
                                   publish_auth="none", producer_timeout_s=1.0, producer_gone_s=1.5)
        async with running("encoder", settings, encoder_lifespan):
            producer = await asyncio.create_subprocess_exec(
                sys.executable, "-c", PRODUCER, stream_id, nats_server.url, stdout=asyncio.subprocess.PIPE)
            assert producer.stdout is not None
            assert await asyncio.wait_for(producer.stdout.readline(), 20) == b"open\n"
            await wait_for_state(store, stream_id, S.PUBLISHING)
            assert glob.glob(f"/dev/shm/framecast-{stream_id}-*")
            producer.send_signal(signal.SIGKILL)
            await producer.wait()
            killed_at = time.monotonic()
            stalled = await wait_for_state(store, stream_id, S.STALLED, timeout=10)
            assert "producer" in stalled.reason
            failed = await wait_for_state(store, stream_id, S.FAILED, timeout=10)
            assert "producer gone" in failed.reason
            assert time.monotonic() - killed_at < 8
            await eventually(lambda: not _ffmpeg_publishing(stream_id), "FFmpeg of the dead stream exits")
    assert not glob.glob(f"/dev/shm/framecast-{stream_id}-*"), "the ring was not reclaimed"


async def test_killed_encoder_is_replaced_within_two_seconds(
    nats_server: NatsServer, bus: Bus, stream_id: str
) -> None:
    store = await StateStore.open(bus, "test")
    async with RtspReceiver(width=W, height=H, path=stream_id) as rx:
        env = dict(os.environ, FRAMECAST_NATS_URL=nats_server.url, FRAMECAST_INSTANCE_ID="encoder-a",
                   FRAMECAST_MEDIAMTX_RTSP=f"rtsp://127.0.0.1:{rx.port}", FRAMECAST_PUBLISH_AUTH="none",
                   FRAMECAST_HEALTH_ADDR="")
        first = await asyncio.create_subprocess_exec(sys.executable, "-m", "framecast.encoder", env=env,
                                                     stderr=asyncio.subprocess.DEVNULL)
        try:
            async with framecast.capture.open(stream_id, width=W, height=H, nats_url=nats_server.url) as stream:
                pattern = TestPattern(W, H)
                sent = 0

                async def produce() -> None:
                    nonlocal sent
                    while True:
                        sent += 1
                        await stream.send(pattern.render(sent, int(time.time() * 1000)))
                        await asyncio.sleep(1 / 30)

                producing = asyncio.create_task(produce())
                record = await wait_for_state(store, stream_id, S.PUBLISHING, timeout=30)
                assert record.encoder_id == "encoder-a"
                ffmpeg_of_a = _ffmpeg_publishing(stream_id)
                assert len(ffmpeg_of_a) == 1
                settings = EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{rx.port}",
                                           publish_auth="none")
                async with running("encoder", settings, encoder_lifespan, instance="encoder-b"):
                    first.send_signal(signal.SIGKILL)
                    await first.wait()
                    killed_at = time.monotonic()
                    taken = await wait_for_state(store, stream_id, S.STARTING, S.PUBLISHING, timeout=10,
                                                 where=lambda r: r.encoder_id != "encoder-a")
                    handover = time.monotonic() - killed_at
                    assert taken.encoder_id == "encoder-b"
                    assert handover < 2.5, f"hand-over took {handover:.2f} s"
                    history = [e async for e in _events(store, stream_id, until=lambda e: e.encoder_id == "encoder-b")]
                    assert "taken over from encoder encoder-a" in history[-1].reason
                    await wait_for_state(store, stream_id, S.PUBLISHING, timeout=15,
                                         where=lambda r: r.encoder_id == "encoder-b")
                    assert not any(pid in _ffmpeg_publishing(stream_id) for pid in ffmpeg_of_a), \
                        "encoder-a's FFmpeg outlived it"
                    before = sent
                    await eventually(lambda: sent > before + 10, "the producer keeps sending")
                producing.cancel()
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()


async def _events(store: StateStore, stream_id: str, until):  # type: ignore[no-untyped-def]
    async for _, event in store.history(stream_id):
        yield event
        if until(event):
            return

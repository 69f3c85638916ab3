"""Encoder capacity: an instance at its limit refuses a stream, says so, and another takes it.

No MediaMTX listens here: what is tested is who claims a stream, and encoders keep retrying
an unreachable server (the streams stay stalled on their claiming encoder).
"""

from __future__ import annotations

import asyncio

import framecast.capture
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.messages import EncoderHeartbeat
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from tests.support.rtsp import free_port
from tests.support.services import running, wait_for_state

S = StreamState
CLAIMED = (S.STARTING, S.STALLED, S.PUBLISHING)


async def test_an_encoder_at_capacity_refuses_and_another_takes_the_stream(
    nats_server: NatsServer, bus: Bus, stream_id: str
) -> None:
    store = await StateStore.open(bus, "test")
    nowhere = f"rtsp://127.0.0.1:{free_port()}"
    one_stream = {"nats_url": nats_server.url, "mediamtx_rtsp": nowhere, "publish_auth": "none", "max_streams": 1}
    first, second = f"{stream_id}-a", f"{stream_id}-b"
    heartbeats: asyncio.Queue[EncoderHeartbeat] = asyncio.Queue()

    async def on_heartbeat(message: EncoderHeartbeat, _msg: object) -> None:
        await heartbeats.put(message)

    async with running("encoder", EncoderSettings(**one_stream), encoder_lifespan, instance=f"{stream_id}-enc-a"):
        async with framecast.capture.open(first, width=160, height=120, nats_url=nats_server.url):
            record = await wait_for_state(store, first, *CLAIMED)
            assert record.encoder_id == f"{stream_id}-enc-a"
            await bus.subscribe(subjects.encoder_heartbeat(f"{stream_id}-enc-a"), EncoderHeartbeat, on_heartbeat)
            async with asyncio.timeout(5):
                while (beat := await heartbeats.get()).active == 0:  # one sent just before the claim
                    pass
            assert (beat.capacity, beat.active, beat.streams) == (1, 1, [first])

            async with framecast.capture.open(second, width=160, height=120, nats_url=nats_server.url):
                # the only encoder is full: the stream waits for one, saying why
                waiting = await wait_for_state(store, second, S.REQUESTED, where=lambda r: "busy" in r.reason)
                assert waiting.reason == "every encoder known is busy (1 full); waiting for room"
                async with running("encoder", EncoderSettings(**one_stream), encoder_lifespan,
                                   instance=f"{stream_id}-enc-b"):
                    taken = await wait_for_state(store, second, *CLAIMED,
                                                 where=lambda r: r.encoder_id == f"{stream_id}-enc-b")
                    assert taken.encoder_id == f"{stream_id}-enc-b"
                    assert (await store.get(first)).encoder_id == f"{stream_id}-enc-a"

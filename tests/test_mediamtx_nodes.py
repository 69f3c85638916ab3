"""Several MediaMTX nodes against stand-ins (an RTSP receiver per node), so the failover of a
stream from a lost node to another runs everywhere; tests/test_mediamtx_nodes_real.py does the
same, and more, with real MediaMTX processes where a binary is present."""

from __future__ import annotations

import json
import time

from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.proto.bus import Bus
from framecast.proto.states import StreamState as S
from framecast.proto.store import StateStore
from tests.support.rtsp import RtspReceiver
from tests.support.services import cv_worker, running, wait_for_state

W, H = 320, 240


async def test_a_stream_whose_node_is_lost_publishes_on_another(
    nats_server: NatsServer, bus: Bus, stream_id: str,
) -> None:
    store = await StateStore.open(bus, "test")
    async with (
        RtspReceiver(width=W, height=H, path=stream_id) as rx_a,
        RtspReceiver(width=W, height=H, path=stream_id) as rx_b,
    ):
        receivers = {"a": rx_a, "b": rx_b}
        nodes = json.dumps([{"name": name, "rtsp": f"rtsp://127.0.0.1:{rx.port}"} for name, rx in receivers.items()])
        settings = EncoderSettings(nats_url=nats_server.url, mediamtx_nodes=nodes, publish_auth="none")
        async with running("encoder", settings, encoder_lifespan), cv_worker(nats_server.url, stream_id):
            record = await wait_for_state(store, stream_id, S.PUBLISHING, timeout=30, where=lambda r: r.mediamtx_node)
            first = record.mediamtx_node
            other = "b" if first == "a" else "a"
            await receivers[first].wait_frames(5, timeout=20)
            await receivers[first].stop()  # the node is gone: nothing listens there any more
            lost_at = time.monotonic()
            await wait_for_state(store, stream_id, S.PUBLISHING, timeout=30, where=lambda r: r.mediamtx_node == other)
            print(f"node lost -> publishing on the other node: {time.monotonic() - lost_at:.2f} s")
            await receivers[other].wait_frames(5, timeout=20)

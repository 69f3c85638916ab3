"""Two real MediaMTX nodes: streams spread over them, viewers are sent to the right one, and a
stream whose node is lost is published again on the other, where the gateway then sends its
viewers.

Everything is real: two MediaMTX processes (each asking the one auth service's hook), the
encoder placing streams by the nodes' control APIs, CV workers with the SDK, the gateway's
playback answer, and FFmpeg reading each stream by RTSP from the node it was sent to.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import imageio_ffmpeg

from framecast.auth import AuthSettings
from framecast.auth import lifespan as auth_lifespan
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.gateway.service import lifespan as gateway_lifespan
from framecast.gateway.settings import GatewaySettings
from framecast.proto.bus import Bus
from framecast.proto.states import StreamState as S
from framecast.proto.store import StateStore
from tests.support.real_mediamtx import RealMediaMTX, needs_mediamtx, real_mediamtx
from tests.support.rtsp import free_port
from tests.support.services import cv_worker, running, wait_for_state

pytestmark = needs_mediamtx
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
API_KEY = "two-node-test-api-key-012345"
W, H = 320, 240


def nodes_json(servers: dict[str, RealMediaMTX]) -> str:
    return json.dumps([{"name": name, "rtsp": s.rtsp, "api": s.api, "whep": s.whep, "hls": s.hls}
                       for name, s in servers.items()])


async def reads_one_frame(url: str) -> bool:
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url,
        "-frames:v", "1", "-f", "null", "-", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await asyncio.wait_for(proc.wait(), 30) == 0


async def test_streams_spread_over_two_nodes_and_move_when_one_is_lost(
    nats_server: NatsServer, bus: Bus, stream_id: str, tmp_path: Path,
) -> None:
    store = await StateStore.open(bus, "test")
    auth_addr, gateway_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    first, second = f"{stream_id}-1", f"{stream_id}-2"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with (
        real_mediamtx(tmp_path / "a", auth_addr) as node_a,
        real_mediamtx(tmp_path / "b", auth_addr) as node_b,
    ):
        servers = {"a": node_a, "b": node_b}
        nodes = nodes_json(servers)
        async with (
            running("auth", AuthSettings(nats_url=nats_server.url, auth_addr=auth_addr,
                                         auth_key_dir=str(tmp_path / "keys"), mediamtx_nodes=nodes), auth_lifespan),
            running("encoder", EncoderSettings(nats_url=nats_server.url, mediamtx_nodes=nodes), encoder_lifespan),
            running("gateway", GatewaySettings(nats_url=nats_server.url, gateway_addr=gateway_addr,
                                               gateway_api_key=API_KEY, mediamtx_nodes=nodes), gateway_lifespan),
            httpx.AsyncClient(base_url=f"http://{gateway_addr}", headers={"X-Api-Key": API_KEY}, timeout=10) as http,
        ):
            async def playback(stream: str) -> dict[str, str]:
                answer = await http.post(f"/api/streams/{stream}/playback")
                assert answer.status_code == 200, answer.text
                return answer.json()  # type: ignore[no-any-return]

            async with cv_worker(nats_server.url, first, width=W, height=H):
                one = await wait_for_state(store, first, S.PUBLISHING, timeout=30)
                # the second stream goes to the node with fewer paths: the other one
                async with cv_worker(nats_server.url, second, width=W, height=H):
                    two = await wait_for_state(store, second, S.PUBLISHING, timeout=30)
                    assert {one.mediamtx_node, two.mediamtx_node} == {"a", "b"}
                    for record in (one, two):
                        node = servers[record.mediamtx_node]
                        watch = await playback(record.stream_id)
                        assert watch["whep_url"] == f"{node.whep}/{record.stream_id}/whep"
                        assert watch["hls_url"] == f"{node.hls}/{record.stream_id}/index.m3u8"
                        assert await reads_one_frame(f"{node.rtsp}/{record.stream_id}?token={watch['token']}")
                    listed = (await http.get(f"/api/streams/{first}")).json()
                    assert listed["state"] in ("publishing", "live")

                    lost, kept = one.mediamtx_node, two.mediamtx_node
                    await servers[lost].stop()
                    lost_at = time.monotonic()
                    moved = await wait_for_state(store, first, S.PUBLISHING, timeout=60,
                                                 where=lambda r: r.mediamtx_node == kept)
                    print(f"MediaMTX node lost -> publishing on the other node: {time.monotonic() - lost_at:.2f} s")
                    watch = await playback(first)
                    assert watch["whep_url"] == f"{servers[kept].whep}/{first}/whep"
                    assert await reads_one_frame(f"{servers[kept].rtsp}/{first}?token={watch['token']}")
                    assert moved.encoder_id == one.encoder_id, "the same encoder, another node"
                    still = await store.get(second)
                    assert still is not None and still.mediamtx_node == kept

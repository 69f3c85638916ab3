"""A popular stream served by an edge: a real MediaMTX edge pulls it from the real origin on its
first viewer's demand, with the relay secret, and the gateway sends viewers there once the
origin has its share.

Everything is real: three MediaMTX processes (an origin, an edge with the relay secret and a
rogue edge without it, each asking the one auth service's hook), the encoder publishing to the
origin (edges take no publisher), a CV worker with the SDK, the gateway's playback answers and
stream view, and FFmpeg reading by RTSP where the gateway sent it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
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
from tests.support.services import cv_worker, eventually, running, wait_for_state

pytestmark = needs_mediamtx
FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()
API_KEY = "edge-test-api-key-0123456789"
RELAY_SECRET = secrets.token_hex(24)
W, H = 320, 240


def nodes_json(origin: RealMediaMTX, edges: dict[str, RealMediaMTX]) -> str:
    listed = [{"name": "origin", "rtsp": origin.rtsp, "api": origin.api, "whep": origin.whep, "hls": origin.hls}]
    listed += [{"name": name, "rtsp": edge.rtsp, "api": edge.api, "whep": edge.whep, "hls": edge.hls,
                "edge_of": "origin"} for name, edge in edges.items()]
    return json.dumps(listed)


async def reads_one_frame(url: str) -> bool:
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url,
        "-frames:v", "1", "-f", "null", "-", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    return await asyncio.wait_for(proc.wait(), 30) == 0


@contextlib.asynccontextmanager
async def watching(url: str) -> AsyncIterator[None]:
    """A viewer that keeps reading ``url`` for the length of the block."""
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url, "-f", "null", "-",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        await proc.wait()


async def test_a_popular_streams_next_viewers_play_from_an_edge_that_pulls_it_with_the_relay_secret(
    nats_server: NatsServer, bus: Bus, stream_id: str, tmp_path: Path,
) -> None:
    store = await StateStore.open(bus, "test")
    auth_addr, gateway_addr = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    for name in ("origin", "edge", "rogue"):
        (tmp_path / name).mkdir()
    async with real_mediamtx(tmp_path / "origin", auth_addr) as origin:
        async with (
            real_mediamtx(tmp_path / "edge", auth_addr, origin=origin.rtsp, relay_secret=RELAY_SECRET) as edge,
            real_mediamtx(tmp_path / "rogue", auth_addr, origin=origin.rtsp, relay_secret=secrets.token_hex(24)) as rogue,
        ):
            nodes = nodes_json(origin, {"edge": edge})
            async with (
                running("auth", AuthSettings(nats_url=nats_server.url, auth_addr=auth_addr,
                                             auth_key_dir=str(tmp_path / "keys"), mediamtx_nodes=nodes,
                                             auth_relay_secret=RELAY_SECRET), auth_lifespan),
                running("encoder", EncoderSettings(nats_url=nats_server.url, mediamtx_nodes=nodes), encoder_lifespan),
                running("gateway", GatewaySettings(nats_url=nats_server.url, gateway_addr=gateway_addr,
                                                   gateway_api_key=API_KEY, mediamtx_nodes=nodes,
                                                   gateway_edge_after=1, mediamtx_poll_s=0.2), gateway_lifespan),
                httpx.AsyncClient(base_url=f"http://{gateway_addr}", headers={"X-Api-Key": API_KEY},
                                  timeout=10) as http,
                cv_worker(nats_url=nats_server.url, stream_id=stream_id, width=W, height=H),
            ):
                async def playback() -> dict[str, str]:
                    answer = await http.post(f"/api/streams/{stream_id}/playback")
                    assert answer.status_code == 200, answer.text
                    return answer.json()  # type: ignore[no-any-return]

                async def readers(count: int) -> bool:
                    return (await http.get(f"/api/streams/{stream_id}")).json()["readers"] == count

                record = await wait_for_state(store, stream_id, S.LIVE, timeout=30)
                assert record.mediamtx_node == "origin", "encoders publish to the origin, never to an edge"

                first = await playback()
                assert first["mediamtx_node"] == "origin", "the first viewer plays from the origin"
                async with watching(f"{origin.rtsp}/{stream_id}?token={first['token']}"):
                    await eventually(lambda: readers(1), "the gateway counts the origin's viewer", 20)
                    second = await playback()
                    assert second["mediamtx_node"] == "edge", "the next viewer goes to the idle edge"
                    assert second["whep_url"] == f"{edge.whep}/{stream_id}/whep"
                    assert not await reads_one_frame(f"{edge.rtsp}/{stream_id}"), "the edge wants a token too"
                    at_edge = f"{edge.rtsp}/{stream_id}?token={second['token']}"
                    assert await reads_one_frame(at_edge), "the edge pulls the stream from the origin on demand"
                    async with watching(at_edge):
                        await eventually(lambda: readers(2), "two viewers, the edge's pull not among them", 30)
                    rogue_url = f"{rogue.rtsp}/{stream_id}?token={second['token']}"
                    assert not await reads_one_frame(rogue_url), "an edge without the relay secret gets nothing"

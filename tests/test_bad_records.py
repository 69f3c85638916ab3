"""One bad stream record must not take the control plane down.

A format that cannot be encoded is refused where it is made, before anything is written; a
record that cannot be read anyway (written by an older or broken producer) is reported and
skipped by every reader, answered with a clear message, and repaired or deleted by a command.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

import httpx

from framecast.capture.service import lifespan as capture_lifespan
from framecast.capture.settings import CaptureSettings
from framecast.devstack.nats import NatsServer
from framecast.gateway.service import lifespan as gateway_lifespan
from framecast.gateway.settings import GatewaySettings
from framecast.proto.bus import Bus
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from framecast.runtime.lifecycle import Runtime
from tests.support.services import running

API_KEY = "bad-records-key-0123456789"


async def framecast(*args: str, nats_url: str, stdin: bytes = b"") -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from framecast.runtime.cli import main; sys.exit(main())", *args,
        env=dict(os.environ, FRAMECAST_NATS_URL=nats_url), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(stdin), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_an_odd_size_is_refused_before_anything_is_written(nats_server: NatsServer, bus: Bus,
                                                                stream_id: str) -> None:
    store = await StateStore.open(bus, "test")
    code, _, err = await framecast("capture", "stdin", "--stream", stream_id, "--size", "321x240",
                                   nats_url=nats_server.url, stdin=bytes(321 * 240 * 3))
    assert code == 2
    assert err.strip() == "framecast capture: width must be an even number of pixels from 16 to 7680, got 321"
    assert await store.get(stream_id) is None


async def test_an_unreadable_record_is_skipped_explained_repaired_and_deleted(
    nats_server: NatsServer, bus: Bus, stream_id: str
) -> None:
    store = await StateStore.open(bus, "test")
    good, bad = stream_id + "good", stream_id + "bad"
    await store.transition(good, StreamState.REQUESTED)
    now = time.time()
    await store.kv.put(bad, json.dumps({  # what a producer without the size check once wrote
        "stream_id": bad, "state": "requested", "since": now, "updated_at": now,
        "format": {"width": 321, "height": 240, "fps": 30, "pix_fmt": "bgr24"}}).encode())

    code, out, err = await framecast("stream", "list", nats_url=nats_server.url)
    assert code == 0 and good in out and bad not in out
    assert f"`framecast stream repair {bad}`" in err and "Traceback" not in err

    async with (
        running("capture", CaptureSettings(nats_url=nats_server.url), capture_lifespan),
        gateway_lifespan(Runtime("gateway", GatewaySettings(
            nats_url=nats_server.url, gateway_addr="127.0.0.1:0", gateway_api_key=API_KEY), "gateway-1")) as gateway,
    ):
        async with httpx.AsyncClient(base_url=gateway.url, headers={"Authorization": f"Bearer {API_KEY}"}) as api:
            listed = [s["stream_id"] for s in (await api.get("/api/streams")).json()]
        assert good in listed and bad not in listed  # the gateway started and serves the others
        code, _, err = await framecast("stream", "stop", bad, nats_url=nats_server.url)
        assert code == 1 and "cannot be read (field 'format.width'" in err and "internal error" not in err

    code, out, err = await framecast("stream", "repair", bad, nats_url=nats_server.url)
    assert code == 0, err
    assert out.startswith(f"{bad}: failed (record repaired by an operator")
    record = await store.get(bad)
    assert record is not None and record.state is StreamState.FAILED

    code, out, _ = await framecast("stream", "delete", good, nats_url=nats_server.url)
    assert code == 1  # still requested: stop it first
    code, out, err = await framecast("stream", "delete", bad, nats_url=nats_server.url)
    assert code == 0 and out.strip() == f"{bad}: deleted", err
    assert await store.get(bad) is None

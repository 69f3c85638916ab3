"""The service runtime: JSON logs with trace ids, health and readiness, signals."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys

import httpx
from opentelemetry import trace

from framecast.devstack.nats import NatsServer
from framecast.proto.logs import JsonFormatter, _Context


def test_json_log_lines_carry_service_and_trace_ids(spans) -> None:  # type: ignore[no-untyped-def]
    record = logging.makeLogRecord({"name": "framecast.test", "levelname": "INFO", "msg": "claimed %s",
                                    "args": ("cam1",), "stream_id": "cam1"})
    with trace.get_tracer("test").start_as_current_span("work") as span:
        _Context("encoder", "encoder-1").filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "claimed cam1" and line["stream_id"] == "cam1"
    assert line["service"] == "encoder" and line["instance"] == "encoder-1"
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")


async def test_service_is_ready_then_stops_cleanly_on_sigterm(nats_server: NatsServer, free_port: int) -> None:
    env = dict(os.environ, FRAMECAST_NATS_URL=nats_server.url, FRAMECAST_HEALTH_ADDR=f"127.0.0.1:{free_port}")
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "framecast.capture", env=env,
                                                   stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    lines: list[dict] = []  # type: ignore[type-arg]

    async def until(message: str) -> None:
        while line := await process.stderr.readline():  # type: ignore[union-attr]
            lines.append(json.loads(line))  # every line is JSON when stderr is not a terminal
            if lines[-1]["msg"] == message:
                return
        raise AssertionError(f"capture exited before logging {message!r}: {lines}")

    await asyncio.wait_for(until("capture ready"), 30)
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"http://127.0.0.1:{free_port}/healthz")).status_code == 200
        assert (await client.get(f"http://127.0.0.1:{free_port}/readyz")).status_code == 200
    process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(until("capture stopped"), 30)
    assert await asyncio.wait_for(process.wait(), 30) == 0
    assert all(line["service"] == "capture" for line in lines)

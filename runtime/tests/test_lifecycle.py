"""The service runtime: JSON logs with trace ids, health and readiness, signals."""

from __future__ import annotations

import asyncio
import http.server
import json
import logging
import os
import signal
import sys
import threading

import httpx
from opentelemetry import trace

from framecast.devstack.nats import NatsServer
from framecast.proto import subjects
from framecast.proto.errors import RequestRejected
from framecast.proto.messages import Accepted, StopStream
from framecast.runtime.lifecycle import cancel_all
from framecast.runtime.logs import JsonFormatter, _Context


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


async def test_spans_are_exported_over_otlp_when_an_endpoint_is_set(nats_server: NatsServer, bus) -> None:  # type: ignore[no-untyped-def]
    """A real OTLP/HTTP receiver on loopback gets the service's spans (flushed at shutdown)."""
    received: list[tuple[str, bytes]] = []

    class Collector(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the handler's name is fixed by http.server
            received.append((self.path, self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    collector = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    env = dict(os.environ, FRAMECAST_NATS_URL=nats_server.url,
               OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{collector.server_address[1]}")
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "framecast.capture", env=env,
                                                   stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    try:
        while b"capture ready" not in await asyncio.wait_for(process.stderr.readline(), 30):
            pass
        try:
            await bus.request(subjects.STREAM_STOP, StopStream(stream_id="no-such-stream"), Accepted,
                              service="capture")
        except RequestRejected as exc:
            assert exc.code == "not_found"
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
        collector.shutdown()
    traces = [body for path, body in received if path == "/v1/traces"]
    assert traces, f"no spans reached the collector: {[path for path, _ in received]}"
    assert any(subjects.STREAM_STOP.encode() in body and b"framecast-capture" in body for body in traces)


async def test_cancel_all_cancels_again_a_task_that_lost_its_cancellation() -> None:
    """nats-py can lose a cancellation that arrives as one of its calls completes; a task that
    lost it must not keep whoever stops it waiting forever (a producer's close, a service's stop)."""
    lost = asyncio.Event()

    async def loses_the_first_cancellation() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            lost.set()  # swallowed, as inside nats-py: the task goes on waiting
        await asyncio.Event().wait()

    task = asyncio.create_task(loses_the_first_cancellation())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_all([task]), 10)
    assert lost.is_set() and task.cancelled()

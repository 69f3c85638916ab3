"""The bus against a real nats-server: typed round trips, rejections, queue groups, traces."""

from __future__ import annotations

import asyncio

import nats.js.errors
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from framecast.proto import subjects
from framecast.proto.bus import Bus, settle
from framecast.proto.errors import NatsUnavailable, NoResponders, RequestRejected
from framecast.proto.messages import Accepted, Rejected, StopStream, StreamEnd, StreamRecord
from framecast.proto.states import StreamState


async def test_request_reply_round_trip(bus: Bus, stream_id: str) -> None:
    subject = f"test.{stream_id}.stop"

    async def handle(message: StopStream, _msg: object) -> Accepted:
        return Accepted(stream=StreamRecord(stream_id=message.stream_id, state=StreamState.STOPPING))

    await bus.subscribe(subject, StopStream, handle)
    reply = await bus.request(subject, StopStream(stream_id=stream_id), Accepted, service="test")
    assert reply.stream.stream_id == stream_id
    assert reply.stream.state is StreamState.STOPPING


async def test_a_subscription_is_served_as_soon_as_subscribe_returns(
    nats_server, stream_id: str  # type: ignore[no-untyped-def]
) -> None:
    # Whatever the subscriber still had queued (here a large publish) must not let a request
    # from another connection overtake its SUB and meet "no responders".
    consumer = await Bus.connect(nats_server.url, client_id="consumer")
    requester = await Bus.connect(nats_server.url, client_id="requester")
    try:
        async def handle(message: StopStream, _msg: object) -> Accepted:
            return Accepted(stream=StreamRecord(stream_id=message.stream_id, state=StreamState.STOPPING))

        for n in range(20):
            subject = f"test.{stream_id}.{n}"
            await consumer.nc.publish(f"test.{stream_id}.bulk", bytes(512 * 1024))
            await consumer.subscribe(subject, StopStream, handle)
            await requester.request(subject, StopStream(stream_id=stream_id), Accepted, service="test")
    finally:
        await consumer.close()
        await requester.close()


async def test_malformed_request_gets_a_rejection_naming_the_field(bus: Bus, stream_id: str) -> None:
    subject = f"test.{stream_id}.stop"
    called = asyncio.Event()

    async def handle(message: StopStream, _msg: object) -> None:
        called.set()

    await bus.subscribe(subject, StopStream, handle)
    reply = await bus.nc.request(
        subject, b'{"type":"framecast.control.stop.v1","stream_id":"bad id!"}', timeout=2
    )
    rejection = bus_decode_rejection(reply.data)
    assert rejection.code == "bad_request"
    assert "stream_id" in rejection.message and subject in rejection.message
    reply = await bus.nc.request(subject, b"{not json", timeout=2)
    assert bus_decode_rejection(reply.data).code == "bad_request"
    assert not called.is_set()


def bus_decode_rejection(data: bytes) -> Rejected:
    from framecast.proto import codec

    return codec.decode("reply", data, Rejected)


async def test_handler_crash_answers_internal_without_details(bus: Bus, stream_id: str) -> None:
    subject = f"test.{stream_id}.crash"

    async def handle(message: StopStream, _msg: object) -> None:
        raise RuntimeError("secret internals at /srv/app.py line 3")

    await bus.subscribe(subject, StopStream, handle)
    with pytest.raises(RequestRejected) as caught:
        await bus.request(subject, StopStream(stream_id=stream_id), Accepted, service="test")
    assert caught.value.code == "internal"
    assert "secret" not in caught.value.message


async def test_a_handler_that_finds_jetstream_away_answers_unavailable(bus: Bus, stream_id: str) -> None:
    # e.g. a state write while the cluster elects a stream leader: the caller may try again
    subject = f"test.{stream_id}.away"

    async def handle(message: StopStream, _msg: object) -> None:
        raise nats.js.errors.NoStreamResponseError

    await bus.subscribe(subject, StopStream, handle)
    with pytest.raises(RequestRejected) as caught:
        await bus.request(subject, StopStream(stream_id=stream_id), Accepted, service="test")
    assert caught.value.code == "unavailable" and "try again" in caught.value.message


async def test_subscriber_survives_bad_messages(bus: Bus, stream_id: str) -> None:
    subject = subjects.stream_control(stream_id)
    received: asyncio.Queue[StreamEnd] = asyncio.Queue()

    async def handle(message: StreamEnd, _msg: object) -> None:
        await received.put(message)

    await bus.subscribe(subject, StreamEnd, handle)
    await bus.nc.publish(subject, b"\xff\x00garbage")
    await bus.nc.publish(subject, b'{"type":"framecast.some.future.v9"}')
    await bus.publish(subject, StreamEnd(stream_id=stream_id, reason="done"))
    message = await asyncio.wait_for(received.get(), 5)
    assert message.reason == "done"


async def test_no_responders_names_the_service(bus: Bus, stream_id: str) -> None:
    with pytest.raises(NoResponders, match="no capture service is answering"):
        await bus.request(f"test.{stream_id}.nobody", StopStream(stream_id=stream_id), Accepted, service="capture")


async def test_queue_group_delivers_each_message_once(bus: Bus, stream_id: str) -> None:
    subject = f"test.{stream_id}.queue"
    seen: list[str] = []
    done = asyncio.Event()

    def member(name: str):  # type: ignore[no-untyped-def]
        async def handle(message: StreamEnd, _msg: object) -> None:
            seen.append(name)
            if len(seen) == 20:
                done.set()

        return handle

    await bus.subscribe(subject, StreamEnd, member("a"), queue="q")
    await bus.subscribe(subject, StreamEnd, member("b"), queue="q")
    for _ in range(20):
        await bus.publish(subject, StreamEnd(stream_id=stream_id))
    await asyncio.wait_for(done.wait(), 5)
    await settle(bus.nc)
    assert len(seen) == 20


async def test_unreachable_nats_is_a_clear_error() -> None:
    with pytest.raises(NatsUnavailable, match="cannot reach NATS at nats://127.0.0.1:1"):
        await Bus.connect("nats://127.0.0.1:1", client_id="test", connect_timeout=0.5)


async def test_trace_context_crosses_the_bus(
    nats_server, spans: InMemorySpanExporter, stream_id: str  # type: ignore[no-untyped-def]
) -> None:
    producer = await Bus.connect(nats_server.url, client_id="producer")
    consumer = await Bus.connect(nats_server.url, client_id="consumer")
    subject = f"test.{stream_id}.traced"
    try:
        async def handle(message: StopStream, _msg: object) -> Accepted:
            return Accepted(stream=StreamRecord(stream_id=message.stream_id, state=StreamState.STOPPING))

        await consumer.subscribe(subject, StopStream, handle)
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("caller") as root:
            await producer.request(subject, StopStream(stream_id=stream_id), Accepted, service="test")
        trace_id = root.get_span_context().trace_id
    finally:
        await producer.close()
        await consumer.close()
    mine = [s for s in spans.get_finished_spans() if s.context.trace_id == trace_id]
    kinds = {s.kind for s in mine}
    assert SpanKind.PRODUCER in kinds and SpanKind.CONSUMER in kinds
    consumer_span = next(s for s in mine if s.kind is SpanKind.CONSUMER)
    assert consumer_span.attributes["messaging.system"] == "nats"
    assert consumer_span.attributes["messaging.destination.name"] == subject
    assert consumer_span.attributes["messaging.client.id"] == "consumer"


async def test_a_subscribe_cancelled_while_it_settles_leaves_the_connection_healthy(
    nats_server, stream_id: str  # type: ignore[no-untyped-def]
) -> None:
    # A producer closing mid-subscribe cancels the flush that waits for the server's PONG. nats-py
    # would then hand the next PONG to the cancelled future and drop the connection from its
    # read loop; the stream's final state could not be written.
    bus = await Bus.connect(nats_server.url, client_id="cancelling")
    try:
        async def handle(message: StopStream, _msg: object) -> None:
            pass

        for n in range(20):
            task = asyncio.create_task(bus.subscribe(f"test.{stream_id}.{n}", StopStream, handle))
            for _ in range(3):  # until it waits for the PONG
                await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await asyncio.wait_for(settle(bus.nc), 2)
        assert bus.nc.stats["reconnects"] == 0 and bus.nc.is_connected
    finally:
        await bus.close()


async def test_a_list_of_servers_connects_to_one_that_answers(nats_server, stream_id: str) -> None:  # type: ignore[no-untyped-def]
    # FRAMECAST_NATS_URL may name a cluster's nodes; one that is down is skipped
    bus = await Bus.connect(f"nats://127.0.0.1:1, {nats_server.url}", client_id="cluster-client")
    try:
        assert bus.connected and bus.nc.connected_url is not None
        assert bus.nc.connected_url.port == int(nats_server.url.rsplit(":", 1)[1])
    finally:
        await bus.close()

"""The capture service: starts and stops streams whose frames come from a source it runs.

Start requests arrive through the ``capture`` queue group (one instance answers each); stop
requests are checked against the state machine here and then delivered to whoever produces
the stream - this service or a CV worker's SDK - on the stream's control subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from nats.aio.msg import Msg

from framecast.frames import sweep_stale
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.errors import BusError
from framecast.proto.messages import Accepted, EncoderHeartbeat, Rejected, StartStream, StopStream
from framecast.proto.states import ACTIVE, TERMINAL, IllegalTransition, StreamState
from framecast.proto.store import StateStore
from framecast.runtime.lifecycle import Runtime

from .placement import Fleet
from .producer import Producer, StreamClosed
from .settings import CaptureSettings
from .sources import SourceError, open_source, run_source

log = logging.getLogger("framecast.capture")


class CaptureService:
    def __init__(self, runtime: Runtime[CaptureSettings], bus: Bus, store: StateStore) -> None:
        self.runtime = runtime
        self.bus = bus
        self.store = store
        self.producers: dict[str, asyncio.Task[None]] = {}
        self.fleet = Fleet()
        """The encoders' heartbeats, followed once for every stream this service produces."""

    async def on_start(self, request: StartStream, _msg: Msg) -> Accepted | Rejected:
        stream_id = request.stream_id
        current = await self.store.get(stream_id)
        if current is not None and current.state not in TERMINAL:
            return Rejected(code="conflict", message=f"stream {stream_id} is already {current.state}; stop it first")
        if len(self.producers) >= self.runtime.settings.max_streams:
            return Rejected(code="unavailable", message=f"capture {self.runtime.instance} is at its limit of "
                            f"{self.runtime.settings.max_streams} streams")
        try:
            frames = open_source(request.source, request.format)
        except SourceError as exc:
            return Rejected(code="bad_request", message=str(exc))
        producer = Producer(
            self.bus, stream_id, request.format, transport=request.transport, source=request.source,
            metadata=request.metadata, capture_id=self.runtime.instance, host=self.runtime.settings.host_id,
            fleet=self.fleet,
        )
        try:
            await producer.start()
        except (StreamClosed, IllegalTransition) as exc:
            await frames.close()
            return Rejected(code="conflict", message=str(exc))
        self.producers[stream_id] = self.runtime.spawn(self._produce(producer, frames), f"produce-{stream_id}")
        record = await self.store.get(stream_id)
        assert record is not None
        return Accepted(stream=record)

    async def _produce(self, producer: Producer, frames: Any) -> None:
        try:
            await run_source(producer, frames)
        except (SourceError, OSError) as exc:
            log.error("stream %s: %s", producer.stream_id, exc, extra={"stream_id": producer.stream_id})
            await producer.close(str(exc), failed=True)
        except StreamClosed:
            await producer.close(producer.stop_reason())
        except asyncio.CancelledError:
            await asyncio.shield(producer.close("capture service stopping"))
            raise
        else:
            await producer.close(producer.stop_reason("source ended"))
        finally:
            self.producers.pop(producer.stream_id, None)

    async def on_stop(self, request: StopStream, _msg: Msg) -> Accepted | Rejected:
        current = await self.store.get(request.stream_id)
        if current is None:
            return Rejected(code="not_found", message=f"no stream {request.stream_id}")
        if current.state in TERMINAL or current.state is StreamState.STOPPING:
            return Accepted(stream=current)
        try:
            record = await self.store.transition(request.stream_id, StreamState.STOPPING, reason=request.reason,
                                                 only_from=ACTIVE)
        except IllegalTransition as exc:
            return Rejected(code="conflict", message=str(exc))
        await self.bus.publish(subjects.stream_control(request.stream_id), request)
        self.runtime.spawn(self._ensure_stopped(request.stream_id), f"ensure-stopped-{request.stream_id}")
        return Accepted(stream=record)

    async def _ensure_stopped(self, stream_id: str, timeout: float = 10.0) -> None:
        """A stream whose producer is gone would stay 'stopping' forever: finish it ourselves."""

        async def stopped() -> None:
            async for _, record in self.store.watch(stream_id):
                if record is None or record.state in TERMINAL:
                    return

        try:
            await asyncio.wait_for(stopped(), timeout)
        except TimeoutError:
            with contextlib.suppress(IllegalTransition, BusError):
                await self.store.transition(stream_id, StreamState.STOPPED, reason="stopped (no producer answered)")


@contextlib.asynccontextmanager
async def lifespan(runtime: Runtime[CaptureSettings]) -> AsyncIterator[CaptureService]:
    for name in sweep_stale():
        log.info("removed stale frame ring %s", name)
    bus = await Bus.connect(runtime.settings.nats_url, client_id=runtime.instance)
    runtime.require(lambda: bus.connected, "not connected to NATS (reconnecting)")
    try:
        service = CaptureService(runtime, bus, await StateStore.open(bus, runtime.instance))

        async def on_heartbeat(heartbeat: EncoderHeartbeat, _msg: Msg) -> None:
            service.fleet.heard(heartbeat)

        await bus.subscribe(subjects.ENCODER_HEARTBEAT_ALL, EncoderHeartbeat, on_heartbeat)
        await bus.subscribe(subjects.STREAM_START, StartStream, service.on_start, queue=subjects.CAPTURE_QUEUE)
        await bus.subscribe(subjects.STREAM_STOP, StopStream, service.on_stop, queue=subjects.CAPTURE_QUEUE)
        yield service
    finally:
        # producers close their streams (and stop their sources) while the bus is still up
        await runtime.cancel_children()
        await bus.close()

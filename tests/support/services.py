"""Run real framecast services inside the test process, each with its own runtime."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from framecast.runtime.lifecycle import Lifespan, Runtime, serve


@contextlib.asynccontextmanager
async def running(service: str, settings: Any, lifespan: Lifespan[Any], *, instance: str | None = None,
                  timeout: float = 30.0) -> AsyncIterator[Runtime[Any]]:
    """Start ``lifespan`` as service ``service``; wait until it is ready; stop it on exit."""
    runtime = Runtime(service, settings, instance)
    task = asyncio.create_task(serve(runtime, lifespan, handle_signals=False))
    await eventually(lambda: runtime.ready or task.done(), f"{service} ready", timeout)
    if task.done():
        task.result()
        raise RuntimeError(f"{service} stopped before it was ready (exit code {runtime.exit_code})")
    try:
        yield runtime
    finally:
        runtime.request_stop()
        await asyncio.wait_for(task, timeout)


async def wait_for_state(store: StateStore, stream_id: str, *states: StreamState, timeout: float = 20.0,
                         where: Any = None) -> Any:
    """The stream's record once it is in one of ``states`` (and satisfies ``where``, if given);
    fails with the last record seen."""
    last = None

    async def watch() -> Any:
        nonlocal last
        async for _, record in store.watch(stream_id):
            last = record
            if record is not None and record.state in states and (where is None or where(record)):
                return record
        return None

    try:
        return await asyncio.wait_for(watch(), timeout)
    except TimeoutError:
        raise AssertionError(f"{stream_id} never reached {[s.value for s in states]}; last: {last}") from None


async def eventually(predicate: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (checked every 20 ms; it may be a coroutine function, e.g.
    asking a probe), or fail naming ``what``.

    The one polling helper of the tests, for state with nothing to wait on (a flag, /proc, a log,
    an HTTP probe); where there is an event, a queue or a watch, wait on that instead."""
    deadline = asyncio.get_running_loop().time() + timeout

    async def holds() -> bool:
        result = predicate()
        return bool(await result) if inspect.isawaitable(result) else bool(result)

    while not await holds():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def cv_worker(nats_url: str, stream_id: str, *, width: int = 320, height: int = 240,
                    fps: int = 30) -> AsyncIterator[None]:
    """A CV worker for the length of the block: the SDK sending the stamped test pattern at
    ``fps`` (what ``framecast.capture.open`` is for). Stopped from outside (``framecast stream
    stop``), it stops sending, as a worker should, and closes the stream when the block ends."""
    import framecast.capture
    from framecast.frames.pattern import TestPattern

    pattern = TestPattern(width, height)
    async with framecast.capture.open(stream_id, width=width, height=height, fps=fps, nats_url=nats_url) as stream:

        async def produce() -> None:
            n = 0
            with contextlib.suppress(framecast.capture.StreamClosed):
                while not stream.stopped:
                    n += 1
                    await stream.send(pattern.render(n, time.time_ns() // 1_000_000))
                    await asyncio.sleep(1 / fps)  # the worker's frame rate

        producing = asyncio.create_task(produce())
        try:
            yield
        finally:
            producing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await producing

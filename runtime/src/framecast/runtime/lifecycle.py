"""What every framecast service process shares: settings, logs, telemetry, signals, health.

A service is a lifespan (an async context manager) that connects, starts its children and
yields while it serves; leaving it drains NATS and stops the children. The first SIGINT or
SIGTERM leaves the lifespan gracefully, a second one forces the process out.

A :class:`~framecast.proto.errors.FramecastError` that stops a service - a bad setting, no
FFmpeg, NATS out of reach - ends the process with one line on standard error,
``framecast <service>: <message>``, and its ``exit_code``: 2 for a bad setting, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Coroutine, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

import msgspec

from framecast.proto.errors import FramecastError

from . import logs, problems
from .health import HEALTHZ_PATH, READYZ_PATH, Health, probe, readiness
from .settings import CannotListen, CommonSettings, SettingsError, env_name, load, parse_address
from .telemetry import Telemetry

log = logging.getLogger("framecast.runtime")

S = TypeVar("S", bound=CommonSettings)


class Runtime(Generic[S]):
    """Handed to a service's lifespan: its settings, identity, child tasks and stop switch."""

    def __init__(self, service: str, settings: S, instance: str | None = None) -> None:
        self.service = service
        self.settings = settings
        self.instance = (
            instance or settings.instance_id or f"{service}-{socket.gethostname()}-{os.getpid()}"
        )
        self.stopping = asyncio.Event()
        self.ready = False
        self.exit_code = 0
        self.error: FramecastError | None = None
        """What stopped the service, when a FramecastError did; ``run`` prints it."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._conditions: list[tuple[Callable[[], bool], str]] = []

    def require(self, condition: Callable[[], bool], why_not: str) -> None:
        """Report the service not ready whenever ``condition()`` is false (``why_not`` says why),
        e.g. while its NATS connection is down: an orchestrator then routes nothing to it."""
        self._conditions.append((condition, why_not))

    def health(self) -> Health:
        """The readiness probe's answer: serving, and every required condition holding."""
        if not self.ready:
            return readiness(False, f"{self.service} is starting or stopping")
        failing = next((why for condition, why in self._conditions if not condition()), "")
        return readiness(not failing, failing)

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run a child task for the life of the service; if it crashes, the service stops."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._child_done)
        return task

    def _child_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or self.stopping.is_set():
            return
        exc = task.exception()
        if isinstance(exc, FramecastError):
            self.fail(exc)
        elif exc is not None:
            log.error("%s failed: %s", task.get_name(), exc, exc_info=exc)
            self.request_stop(exit_code=1)

    def fail(self, error: FramecastError) -> None:
        """Stop the service because of ``error`` (the first one recorded wins)."""
        if self.error is None:
            self.error = error
            log.debug("%s stopping: %s", self.service, error)
        self.request_stop(exit_code=error.exit_code)

    def request_stop(self, exit_code: int = 0) -> None:
        self.exit_code = self.exit_code or exit_code
        self.stopping.set()

    async def cancel_children(self) -> None:
        await cancel_all(self._tasks)


CANCEL_AGAIN_S = 1.0
"""How long a cancelled task gets before it is cancelled again (``cancel_all``)."""


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again any still running a
    second later: a cancellation can be lost inside nats-py when it arrives just as one of its
    calls completes (Python 3.11's ``wait_for``), and a task awaiting a KV watch that lost it
    would wait for an update forever, and whoever waits for it too (seen under a CPU hog)."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_AGAIN_S)


Lifespan = Callable[[Runtime[S]], AbstractAsyncContextManager[Any]]


async def _health_server(runtime: Runtime[Any], address: str) -> asyncio.Server:
    """``GET /healthz`` (the process answers) and ``GET /readyz`` (it serves) on a small socket,
    in the probes' one format (health.py)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            path = line.split(b" ")[1].decode("latin-1") if line.count(b" ") >= 2 else ""
            found = probe(path, runtime.health)
            if found is None:
                code, media = 404, problems.MEDIA_TYPE
                body = problems.problem_body(problems.answer(404, f"the probes are {HEALTHZ_PATH} and {READYZ_PATH}"))
            else:
                (code, body), media = found, "application/json"
            writer.write(
                f"HTTP/1.1 {code} {problems.title(code)}\r\ncontent-type: {media}\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, OSError):
            pass
        finally:
            writer.close()

    variable = env_name("health_addr")
    try:
        host, port = parse_address(address)
    except ValueError:
        raise SettingsError(variable, f"{address!r} is not valid: expected host:port, e.g. 127.0.0.1:8081") from None
    try:
        return await asyncio.start_server(answer, host, port)
    except OSError as exc:
        raise CannotListen(variable, address, exc.strerror or str(exc)) from None


async def serve(runtime: Runtime[S], lifespan: Lifespan[S], *, handle_signals: bool = True) -> int:
    """Run ``lifespan`` until a stop is requested; return the process exit code."""
    loop = asyncio.get_running_loop()
    received = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal received
        received += 1
        if received == 1:
            log.info("stopping on %s (send it again to force)", sig.name)
            runtime.request_stop()
        else:
            log.warning("second %s: forcing exit", sig.name)
            os._exit(128 + sig)

    installed: list[signal.Signals] = []
    if handle_signals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    health: asyncio.Server | None = None
    try:
        if runtime.settings.health_addr:
            health = await _health_server(runtime, runtime.settings.health_addr)
        async with lifespan(runtime):
            runtime.ready = True
            log.info("%s ready", runtime.service, extra={"instance": runtime.instance})
            await runtime.stopping.wait()
            runtime.ready = False
            log.info("%s stopping", runtime.service)
    except FramecastError as exc:
        runtime.fail(exc)
    finally:
        await runtime.cancel_children()
        if health is not None:
            health.close()
        for sig in installed:
            loop.remove_signal_handler(sig)
    log.info("%s stopped", runtime.service)
    return runtime.exit_code


def report(command: str, error: FramecastError) -> int:
    """Print ``error`` as one line, ``framecast <command>: <message>``; its exit code."""
    print(f"framecast {command}: {error}" if command else f"framecast: {error}", file=sys.stderr)
    return error.exit_code


def run(service: str, settings_type: type[S], lifespan: Lifespan[S]) -> int:
    """The ``main`` of a service process: settings, logging, telemetry, then ``serve``.

    A FramecastError that stops the service becomes one line on standard error and its exit
    code (2 for a bad setting, 1 otherwise), never a traceback.
    """
    try:
        settings = load(settings_type)
    except SettingsError as exc:
        return report(service, exc)
    runtime = Runtime(service, settings)
    logs.configure(service, runtime.instance, settings.log_level, settings.log_format)
    telemetry = Telemetry(service, runtime.instance, console=settings.otel_console).install()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            code = asyncio.run(serve(runtime, lifespan))
            return report(service, runtime.error) if runtime.error is not None else code
        return 130
    except FramecastError as exc:
        return report(service, exc)
    finally:
        telemetry.shutdown()


def settings_help(settings_type: type[msgspec.Struct]) -> str:
    """One line per variable with its default, for ``--help`` epilogues."""
    info = msgspec.inspect.type_info(settings_type)
    lines = ["environment:"]
    for field in info.fields:
        default = "" if field.default is msgspec.NODEFAULT else f" (default: {field.default!r})"
        lines.append(f"  {env_name(field.name)}{default}")
    return "\n".join(lines)

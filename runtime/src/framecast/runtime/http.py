"""Serving an ASGI app (auth, gateway) with uvicorn inside a framecast service lifespan.

The socket is bound first, so a busy address is one clear line rather than a traceback, and
uvicorn's own signal handlers are off: the service runtime owns SIGINT and SIGTERM. Leaving
the context stops the server gracefully (open streaming responses are cut after a grace
period). Imported only by the services that depend on uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .settings import CannotListen, parse_address

SHUTDOWN_GRACE_S = 3.0
HEADER_TIMEOUT_S = 10.0
"""How long a client may take to send a request's head, from connecting or from the end of its
previous response. uvicorn has no such limit: a client sending headers a byte a second would
hold its connection (and a worker's memory) for ever."""


def _protocol_with_header_deadline() -> type:
    from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: PLC0415 - uvicorn is optional

    class HeaderDeadline(H11Protocol):  # type: ignore[misc]
        """uvicorn's h11 protocol, closing a connection whose request head is late."""

        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def handle_events(self) -> None:
            super().handle_events()
            if self.cycle is not None and not self.cycle.response_complete:
                self._disarm()  # a whole request head arrived

        def on_response_complete(self) -> None:
            self._arm()  # the next request on this connection gets the same deadline
            super().on_response_complete()  # may start a pipelined request: that disarms

        def _arm(self) -> None:
            self._disarm()
            self._head_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._late)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _late(self) -> None:
            self._head_timer = None
            if self.transport is not None and not self.transport.is_closing():
                self.transport.close()

    return HeaderDeadline


def listen(address: str, variable: str) -> socket.socket:
    """A listening socket on ``address``; :class:`CannotListen` (naming ``variable``) if it is busy."""
    host, port = parse_address(address)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise CannotListen(variable, address, exc.strerror or str(exc)) from None
    sock.setblocking(False)
    return sock


@contextlib.asynccontextmanager
async def http_server(
    app: Any, address: str, *, variable: str, before_stop: Callable[[], None] | None = None
) -> AsyncIterator[str]:
    """Serve ``app`` on ``address`` until the context exits; yields the base URL."""
    import uvicorn  # noqa: PLC0415 - only services with an HTTP API depend on it

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    sock = listen(address, variable)
    server = Server(uvicorn.Config(app, lifespan="on", log_config=None, log_level="warning", access_log=False,
                                   server_header=False, timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S),
                                   http=_protocol_with_header_deadline()))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    host, port = sock.getsockname()[:2]
    try:
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        yield f"http://{f'[{host}]' if ':' in host else host}:{port}"
    finally:
        server.should_exit = True
        if before_stop is not None:
            before_stop()
        done, _ = await asyncio.wait({task}, timeout=SHUTDOWN_GRACE_S + 2)
        if not done:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sock.close()

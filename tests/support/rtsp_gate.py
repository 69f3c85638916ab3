"""MediaMTX's RTSP authentication in front of a listener that has none.

The RTSP stand-ins (an FFmpeg listener, PyAV's listener in the WHEP bridge) take any publisher.
A stand-in that accepts any publisher hides exactly the defects that break a real deployment
(a token cut by FFmpeg's 127-byte ``user:password`` buffer, say), so this gate sits on the port
publishers connect to and authenticates each ANNOUNCE as MediaMTX v1.20.1 does with
``authMethod: http`` (docs/mediamtx.md, "RTSP"):

- the hook gets MediaMTX's exact payload: ``user``/``password`` from a Basic header, ``token``
  = the password, else the query's ``token`` (if it appears once), else ``jwt``; ``id`` is the
  RTSP session's UUID (the same for the retry on one connection); ``query`` is the raw query;
  ``userAgent`` the client's header;
- a refusal with no credentials at all is the challenge: ``401`` with
  ``WWW-Authenticate: Basic realm="ipcam"``, and the connection stays open for the retry;
- any other refusal is ``401`` without a challenge, after MediaMTX's random 0-4 s delay, and the
  connection is closed.

Without a hook it lets every publisher in, as MediaMTX's default internal users do.

Once an ANNOUNCE is allowed the gate opens the listener's port and forwards that request and the
ones after it with the query and ``Authorization`` removed and the listener's address in the
URI (an FFmpeg listener matches URIs against its own), numbered from CSeq 1 as the listener
expects, and its answers renumbered back. From RECORD on, bytes flow untouched. The gate answers
OPTIONS itself, as the listener takes exactly one connection and must not see one that is then
refused.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

__all__ = ["RtspGate", "hook_payload"]

_PUBLIC = "DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, PAUSE, GET_PARAMETER, TEARDOWN"
_MAX_HEAD = 64 * 1024


@dataclass(slots=True)
class _Request:
    method: str
    uri: str
    headers: list[tuple[str, str]]
    body: bytes = b""

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k.lower() == name.lower()), "")

    def encode(self) -> bytes:
        head = [f"{self.method} {self.uri} RTSP/1.0"] + [f"{k}: {v}" for k, v in self.headers]
        return ("\r\n".join(head) + "\r\n\r\n").encode() + self.body


def _query_token(query: str) -> str:
    pairs = parse_qsl(query, keep_blank_values=True)
    for name in ("token", "jwt"):
        values = [value for key, value in pairs if key == name]
        if len(values) == 1:
            return values[0]
    return ""


def _split_uri(uri: str) -> tuple[str, str, str]:
    """(path, raw query, track control) of ``rtsp://h:p/path?query[/streamid=N]``: FFmpeg
    appends a track's control after the query when there is one, after the path otherwise."""
    parts = urlsplit(uri)
    query, suffix = parts.query, ""
    if "/" in query:
        query, _, rest = query.partition("/")
        suffix = "/" + rest
    path = parts.path.strip("/")
    head, _, last = path.rpartition("/")
    if not suffix and head and last.startswith(("streamid=", "trackID=")):
        path, suffix = head, "/" + last
    return path, query, suffix


def hook_payload(request: _Request, *, ip: str, session_id: str, action: str) -> dict[str, Any]:
    """The JSON MediaMTX posts to the hook for this RTSP request, key for key."""
    user = password = ""
    authorization = request.header("Authorization")
    if authorization.startswith("Basic "):
        with contextlib.suppress(ValueError):
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
    path, query, _ = _split_uri(request.uri)
    return {
        "ip": ip, "user": user, "password": password,
        "token": password or _query_token(query),
        "action": action, "path": path, "protocol": "rtsp", "id": session_id,
        "query": query, "userAgent": request.header("User-Agent"),
    }


@dataclass
class RtspGate:
    """``async with RtspGate(listen_port, upstream_port, hook_url=...)``."""

    port: int
    upstream_port: int
    hook_url: str | None = None
    reject_delay_s: tuple[float, float] = (0.0, 4.0)
    hook_calls: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[bool] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> RtspGate:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._session(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _read(self, reader: asyncio.StreamReader) -> _Request | None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_HEAD:
            return None
        lines = head.decode(errors="replace").split("\r\n")
        method, uri, _ = lines[0].split(" ", 2)
        headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines[1:] if line)]
        request = _Request(method, uri, headers)
        length = int(request.header("Content-Length") or 0)
        if length:
            request.body = await reader.readexactly(length)
        return request

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        ip = peer[0] if peer else ""
        session_id = str(uuid.uuid4())
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        record_cseq: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        offset = 0
        try:
            while True:
                request = await self._read(reader)
                if request is None:
                    return
                cseq = request.header("CSeq")
                if upstream is None and request.method == "OPTIONS":
                    writer.write(f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\nPublic: {_PUBLIC}\r\n"
                                 "Server: gortsplib\r\n\r\n".encode())
                    await writer.drain()
                    continue
                if upstream is None:
                    if request.method != "ANNOUNCE":
                        writer.write(f"RTSP/1.0 400 Bad Request\r\nCSeq: {cseq}\r\n\r\n".encode())
                        await writer.drain()
                        return
                    payload = hook_payload(request, ip=ip, session_id=session_id, action="publish")
                    if not await self._allowed(payload):
                        if not (payload["user"] or payload["password"] or payload["token"]):
                            writer.write(f"RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\n"
                                         'WWW-Authenticate: Basic realm="ipcam"\r\n\r\n'.encode())
                            await writer.drain()
                            continue
                        await asyncio.sleep(random.uniform(*self.reject_delay_s))
                        writer.write(f"RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\n\r\n".encode())
                        await writer.drain()
                        return
                    upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
                    offset = int(cseq or 1) - 1
                    self._tasks.add(asyncio.create_task(self._answers(upstream[0], writer, offset, record_cseq)))
                path, _, suffix = _split_uri(request.uri)
                request.uri = f"rtsp://127.0.0.1:{self.upstream_port}/{path}{suffix}"
                request.headers = [(k, str(int(v) - offset) if k.lower() == "cseq" else v)
                                   for k, v in request.headers if k.lower() != "authorization"]
                upstream[1].write(request.encode())
                await upstream[1].drain()
                if request.method == "RECORD":
                    record_cseq.set_result(int(cseq) - offset)
                    await self._pipe(reader, upstream[1])
                    return
        finally:
            if upstream is not None:
                upstream[1].close()

    async def _allowed(self, payload: dict[str, Any]) -> bool:
        if self.hook_url is None:
            allowed = True
        else:
            self.hook_calls.append(payload)
            async with httpx.AsyncClient(timeout=10) as client:
                try:
                    reply = await client.post(self.hook_url, json=payload)
                    allowed = 200 <= reply.status_code < 300
                except httpx.HTTPError:
                    allowed = False
        self.decisions.append(allowed)
        return allowed

    async def _answers(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, offset: int,
                       record_cseq: asyncio.Future[int]) -> None:
        """The listener's responses, with the client's CSeq, until RECORD's; then bytes as they come."""
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, asyncio.CancelledError, ValueError):
            while True:
                head = (await source.readuntil(b"\r\n\r\n")).decode(errors="replace")
                lines = head.split("\r\n")
                body_length = number = 0
                for i, line in enumerate(lines):
                    name, _, value = line.partition(":")
                    if name.lower() == "cseq":
                        number = int(value)
                        lines[i] = f"CSeq: {number + offset}"
                    elif name.lower() == "content-length":
                        body_length = int(value)
                sink.write("\r\n".join(lines).encode() + await source.readexactly(body_length))
                await sink.drain()
                if record_cseq.done() and number == record_cseq.result():
                    break
        await self._pipe(source, sink)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await source.read(1 << 16):
                sink.write(data)
                await sink.drain()
        with contextlib.suppress(OSError):
            sink.close()

"""A stand-in for MediaMTX's control API v3, for tests on machines without a mediamtx binary.

It is a real HTTP server on a loopback port answering with MediaMTX's exact JSON shapes and
status codes (shared/MEDIAMTX.md §3; ``internal/api``, ``internal/defs/api_path.go`` at v1.20.1).
Tests change its paths directly, read back the ``Authorization`` headers it saw, the kicks
it received and the path entries added. Differences from the real one: no 0-4 s pause after a
rejected token, path entries are kept but not validated or applied to the paths, and only the
routes framecast uses (paths list/get, session lists, kicks, path entries added and deleted). Sessions are derived from the
paths: a path's source is a ``publish`` session, each reader a ``read`` one.
"""

from __future__ import annotations

import asyncio
import base64
import socket
import uuid
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Self

import uvicorn
from litestar import Litestar, Request, Response, delete, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.types import ASGIApp

__all__ = ["FakeMediaMTX", "path_item", "serve_asgi", "session_item"]

#: Kick routes (§3.3, §3.4): route prefix -> (the source/reader type it kicks, "not found" noun).
KICKABLE = {
    "rtspsessions": ("rtspSession", "session"),
    "rtspssessions": ("rtspsSession", "session"),
    "webrtcsessions": ("webRTCSession", "session"),
    "hlssessions": ("hlsSession", "session"),
    "rtmpconns": ("rtmpConn", "connection"),
    "rtmpsconns": ("rtmpsConn", "connection"),
    "srtconns": ("srtConn", "connection"),
    "moqsessions": ("moqSession", "session"),
}


@asynccontextmanager
async def serve_asgi(app: ASGIApp) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1:<free port> in this event loop; yields its URL.

    The socket is bound and listening before uvicorn starts, so a request sent at once waits in
    the kernel's backlog instead of racing the start-up.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = uvicorn.Config(
        app, log_config=None, log_level="warning", access_log=False, lifespan="off",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


def _now() -> str:
    """An RFC 3339 timestamp as Go's encoding/json writes a ``time.Time``."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def path_item(
    name: str,
    *,
    available: bool = True,
    online: bool = True,
    conf_name: str = "all_others",
    source_type: str = "rtspSession",
    codec: str = "H264",
    width: int = 640,
    height: int = 360,
    profile: str = "Baseline",
    level: str = "3.1",
    readers: list[dict[str, str]] | None = None,
    inbound_bytes: int = 0,
) -> dict[str, Any]:
    """One path object with MediaMTX's keys, in its emission order, deprecated aliases included."""
    since = _now() if available else None
    tracks2 = (
        [{"codec": codec, "codecProps": {"width": width, "height": height, "profile": profile,
                                         "level": level}}]
        if available else []
    )
    return {
        "name": name,
        "confName": conf_name,
        "ready": available,
        "readyTime": since,
        "available": available,
        "availableTime": since,
        "online": available and online,
        "onlineTime": since if online else None,
        "source": {"type": source_type, "id": str(uuid.uuid4())} if available else None,
        "tracks": [t["codec"] for t in tracks2],
        "tracks2": tracks2,
        "readers": sorted(readers or [], key=lambda r: (r["type"], r["id"])),
        "inboundBytes": inbound_bytes,
        "outboundBytes": 0,
        "inboundFramesInError": 0,
        "bytesReceived": inbound_bytes,
        "bytesSent": 0,
    }


def session_item(kind: str, session_id: str, path: str, state: str) -> dict[str, Any]:
    """One item of ``/v3/<kind>/list``: the keys every kind shares, in MediaMTX's order.

    Per-kind extras (RTSP transport, WebRTC candidates, byte counters, SRT statistics) are left
    out. HLS sessions have no ``state`` (they only read); the others say idle, read or publish.
    """
    item: dict[str, Any] = {"id": session_id, "created": _now(), "remoteAddr": "127.0.0.1:50000"}
    if kind != "hlssessions":
        item["state"] = state
    item.update({"path": path, "query": "", "user": ""})
    if kind in ("rtspsessions", "rtspssessions", "webrtcsessions", "hlssessions", "moqsessions"):
        item["userAgent"] = ""
    return item


def _page(items: list[dict[str, Any]], items_per_page: str, page: str) -> Response[Any]:
    """A list answer as MediaMTX paginates it (``itemsPerPage`` default 100, ``page`` 0-based)."""
    for raw in (items_per_page, page):
        if raw and not raw.isdigit():
            return _error(400, f'strconv.ParseUint: parsing "{raw}": invalid syntax')
    per_page = int(items_per_page) if items_per_page else 100
    number = int(page) if page else 0
    if per_page == 0:
        return _error(400, "invalid items per page")
    pages = -(-len(items) // per_page)
    window = items[number * per_page:(number + 1) * per_page]
    return _ok({"itemCount": len(items), "pageCount": pages, "items": window})


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        {"status": "error", "error": message}, status_code=status,
        headers={"Server": "mediamtx", **(headers or {})},
    )


def _ok(content: Any) -> Response[Any]:
    return Response(content, status_code=200, headers={"Server": "mediamtx"})


class FakeMediaMTX:
    """``async with FakeMediaMTX(token="t") as mtx:`` then point a client at ``mtx.url``.

    ``paths`` maps names to path objects (build them with ``add_path``/``path_item``; mutate
    freely). With ``token`` set, a request needs ``Authorization: Bearer <token>`` (or Basic with
    the token as password), as with MediaMTX's JWT auth; without one it gets 401. Kinds in
    ``disabled`` (e.g. ``rtspssessions``) have no list or kick route, as for a server that is off.
    """

    def __init__(self, *, token: str | None = None, disabled: Collection[str] = ()) -> None:
        self.token = token
        self.disabled = frozenset(disabled)
        self.paths: dict[str, dict[str, Any]] = {}
        self.authorizations: list[str | None] = []
        self.kicks: list[tuple[str, str]] = []
        self.path_configs: dict[str, dict[str, Any]] = {}
        """Path entries added through ``/v3/config/paths/add`` (the values given), by name."""
        self.url = ""
        self._serving: Any = None

    async def __aenter__(self) -> Self:
        self._serving = serve_asgi(self._app())
        self.url = await self._serving.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._serving.__aexit__(*exc_info)

    def add_path(self, name: str, **fields: Any) -> dict[str, Any]:
        """Add (or replace) a path; keyword arguments as ``path_item``. Returns the object."""
        self.paths[name] = path_item(name, **fields)
        return self.paths[name]

    def remove_path(self, name: str) -> None:
        del self.paths[name]

    def add_reader(self, name: str, reader_type: str = "webRTCSession") -> str:
        """A viewer joins ``name``; returns its session id (kickable)."""
        reader = {"type": reader_type, "id": str(uuid.uuid4())}
        readers = self.paths[name]["readers"]
        readers.append(reader)
        readers.sort(key=lambda r: (r["type"], r["id"]))
        return reader["id"]

    # ----- the HTTP side --------------------------------------------------------------------

    def _app(self) -> Litestar:
        @get("/v3/paths/list", sync_to_thread=False)
        def paths_list(
            itemsPerPage: FromQuery[str] = "", page: FromQuery[str] = ""  # noqa: N803
        ) -> Response[Any]:
            return _page([self.paths[n] for n in sorted(self.paths)], itemsPerPage, page)

        @get("/v3/{kind:str}/list", sync_to_thread=False)
        def sessions_list(
            kind: FromPath[str], itemsPerPage: FromQuery[str] = "", page: FromQuery[str] = ""  # noqa: N803
        ) -> Response[Any]:
            if kind not in KICKABLE or kind in self.disabled:
                raise NotFoundException()
            return _page(self.sessions(kind), itemsPerPage, page)

        @get("/v3/paths/get/{name:path}", sync_to_thread=False)
        def paths_get(name: FromPath[str]) -> Response[Any]:
            name = name.lstrip("/")
            if not name:
                return _error(400, "invalid name")
            if name not in self.paths:
                return _error(404, "path not found")
            return _ok(self.paths[name])

        @post("/v3/{kind:str}/kick/{session_id:str}", sync_to_thread=False, status_code=200)
        def kick(kind: FromPath[str], session_id: FromPath[str]) -> Response[Any]:
            if kind not in KICKABLE or kind in self.disabled:
                raise NotFoundException()
            self.kicks.append((kind, session_id))
            kicked_type, noun = KICKABLE[kind]
            if len(session_id) != 36:
                return _error(400, f"invalid UUID length: {len(session_id)}")
            try:
                uuid.UUID(session_id)
            except ValueError:
                return _error(400, "invalid UUID format")
            if not self._kick(kicked_type, session_id):
                return _error(404, f"{noun} not found")
            return _ok({"status": "ok"})

        @post("/v3/config/paths/add/{name:path}", sync_to_thread=False, status_code=200)
        def config_paths_add(name: FromPath[str], data: JSONBody[dict[str, Any]]) -> Response[Any]:
            name = name.lstrip("/")
            if not name:
                return _error(400, "invalid name")
            if name in self.path_configs:
                return _error(400, "path already exists")
            self.path_configs[name] = data
            return _ok({"status": "ok"})

        @delete("/v3/config/paths/delete/{name:path}", sync_to_thread=False, status_code=200)
        def config_paths_delete(name: FromPath[str]) -> Response[Any]:
            name = name.lstrip("/")
            if not name:
                return _error(400, "invalid name")
            if self.path_configs.pop(name, None) is None:
                return _error(404, "path not found")
            return _ok({"status": "ok"})

        def gin_not_found(_: Request[Any, Any, Any], __: Exception) -> Response[str]:
            return Response("404 page not found", status_code=404, media_type="text/plain")

        return Litestar(
            [paths_list, sessions_list, paths_get, kick, config_paths_add, config_paths_delete],
            before_request=self._authenticate,
            exception_handlers={NotFoundException: gin_not_found},
            openapi_config=None, logging_config=None,
        )

    def _authenticate(self, request: Request[Any, Any, Any]) -> Response[Any] | None:
        header = request.headers.get("authorization")
        self.authorizations.append(header)
        if self.token is None:
            return None
        if header is None:
            return _error(401, "authentication error", {"WWW-Authenticate": 'Basic realm="mediamtx"'})
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "basic":
            value = base64.b64decode(value).decode(errors="replace").partition(":")[2]
        elif scheme.lower() != "bearer":
            value = ""
        return None if value == self.token else _error(401, "authentication error")

    def sessions(self, kind: str) -> list[dict[str, Any]]:
        """The items ``/v3/<kind>/list`` answers: the paths' sources and readers of that kind."""
        session_type = KICKABLE[kind][0]
        items = []
        for name in sorted(self.paths):
            path = self.paths[name]
            source = path["source"]
            if source is not None and source["type"] == session_type:
                items.append(session_item(kind, source["id"], name, "publish"))
            items.extend(session_item(kind, reader["id"], name, "read")
                         for reader in path["readers"] if reader["type"] == session_type)
        return items

    def _kick(self, kicked_type: str, session_id: str) -> bool:
        """Apply a kick as MediaMTX does (§3.4); False when no such session exists."""
        for name, path in list(self.paths.items()):
            source = path["source"]
            if source is not None and (source["type"], source["id"]) == (kicked_type, session_id):
                if path["confName"] == "all_others":
                    del self.paths[name]  # an on-demand path disappears once idle
                else:
                    self.paths[name] = path_item(name, available=False, conf_name=path["confName"])
                return True
            for reader in path["readers"]:
                if (reader["type"], reader["id"]) == (kicked_type, session_id):
                    path["readers"].remove(reader)
                    return True
        return False

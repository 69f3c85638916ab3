"""The one client of MediaMTX's control API v3: paths, session lists, kicks and path settings,
with typed errors.

Auth kicks the sessions of a revoked token through it; the gateway asks it whether a stream is
really live; the encoder gives each stream's path its settings. Routes, JSON shapes and status codes are MediaMTX's own (docs/mediamtx.md,
"Control API"). Every request carries a fresh ``Authorization: Bearer`` service token (a JWT
allowing MediaMTX's ``api`` action) when a token source is given; pages are followed here, once.
The Structs ignore fields they do not name, so a newer MediaMTX that adds some breaks nothing.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Self, TypeVar
from urllib.parse import quote

import httpx
import msgspec

__all__ = [
    "ITEMS_PER_PAGE",
    "SESSION_KINDS",
    "CodecProps",
    "MediaMTXBadResponse",
    "MediaMTXClient",
    "MediaMTXError",
    "MediaMTXUnauthorized",
    "MediaMTXUnavailable",
    "Page",
    "Path",
    "PathNotFound",
    "PathReader",
    "PathSource",
    "Session",
    "TokenSource",
    "Track",
]

TokenSource = Callable[[], str | Awaitable[str]]
"""Gives the bearer token for the next request (a JWT allowing MediaMTX's ``api`` action)."""

T = TypeVar("T")

ITEMS_PER_PAGE = 100
SESSION_KINDS = (
    "rtspsessions",
    "rtspssessions",
    "webrtcsessions",
    "hlssessions",
    "rtmpconns",
    "rtmpsconns",
    "srtconns",
    "moqsessions",
)
"""Every collection with list and kick routes; MediaMTX registers a collection's routes only while
its server is enabled, so a 404 on a list means "none"."""


# ----- errors ----------------------------------------------------------------------------------------


class MediaMTXError(Exception):
    """Base of every error this client raises."""


class MediaMTXUnavailable(MediaMTXError):
    """The control API could not be reached (refused, timed out, connection dropped, no token)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"MediaMTX control API at {url} is unreachable ({reason}); is MediaMTX running "
            "with `api: yes`?"
        )


class MediaMTXUnauthorized(MediaMTXError):
    """MediaMTX answered 401: no token (``challenged``) or a token it rejected."""

    status = 401

    def __init__(self, url: str, *, challenged: bool) -> None:
        self.url = url
        self.challenged = challenged
        why = "no credentials were sent" if challenged else "the service token was rejected"
        super().__init__(f"MediaMTX control API at {url} answered 401: {why}")


class MediaMTXBadResponse(MediaMTXError):
    """An answer that is not what API v3 promises: another status, or a body that fails to decode."""

    def __init__(self, url: str, status: int, message: str) -> None:
        self.url = url
        self.status = status
        self.message = message
        super().__init__(f"MediaMTX control API at {url} answered {status}: {message}")


class PathNotFound(MediaMTXError):
    """MediaMTX knows no path of this name (or it is an idle, on-demand path)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"MediaMTX has no path {name!r}")


# ----- what the API answers (camelCase names are MediaMTX's JSON keys) -------------------------------


class PathSource(msgspec.Struct, frozen=True):
    type: str
    id: str = ""


class PathReader(msgspec.Struct, frozen=True):
    type: str
    id: str = ""


class CodecProps(msgspec.Struct, frozen=True):
    """H.264/H.265 props; zero or empty while MediaMTX has not seen the SPS."""

    width: int = 0
    height: int = 0
    profile: str | int = ""
    level: str | int = ""


class Track(msgspec.Struct, frozen=True):
    codec: str
    codecProps: CodecProps | None = None  # noqa: N815 - MediaMTX's key


class Path(msgspec.Struct, frozen=True):
    """One item of ``/v3/paths/list``."""

    name: str
    confName: str = ""  # noqa: N815
    available: bool = False
    availableTime: str | None = None  # noqa: N815
    online: bool = False
    onlineTime: str | None = None  # noqa: N815
    source: PathSource | None = None
    tracks2: list[Track] = []
    readers: list[PathReader] = []
    inboundBytes: int = 0  # noqa: N815
    outboundBytes: int = 0  # noqa: N815
    inboundFramesInError: int = 0  # noqa: N815


class Session(msgspec.Struct, frozen=True):
    """One item of a session or connection list (``/v3/<kind>/list``): what choosing a kick needs."""

    id: str
    path: str = ""
    state: str = ""
    """``idle``, ``read`` or ``publish``; empty for HLS sessions, which only read."""


class Page(msgspec.Struct, Generic[T], frozen=True):
    """One page of any list route."""

    itemCount: int  # noqa: N815
    pageCount: int  # noqa: N815
    items: list[T]


class _ApiError(msgspec.Struct):
    error: str = ""


# ----- the client ------------------------------------------------------------------------------------


class MediaMTXClient:
    """Async client of the control API; one instance per process, closed with ``aclose``."""

    def __init__(
        self,
        base_url: str,
        token: TokenSource | None = None,
        *,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def list_paths_page(self, page: int = 0, items_per_page: int = ITEMS_PER_PAGE) -> Page[Path]:
        """One page (0-based) of ``GET /v3/paths/list``."""
        return await self._page("/v3/paths/list", Path, page, items_per_page, missing_ok=False)  # type: ignore[return-value]

    async def list_paths(self, items_per_page: int = ITEMS_PER_PAGE) -> list[Path]:
        """Every path MediaMTX reports, following the pages; sorted by name as MediaMTX sorts."""
        return await self._list("/v3/paths/list", Path, items_per_page, missing_ok=False)

    async def get_path(self, name: str) -> Path:
        """``GET /v3/paths/get/<name>``; raises ``PathNotFound`` when MediaMTX answers 404."""
        if not name:
            raise ValueError("a MediaMTX path name cannot be empty")
        route = f"/v3/paths/get/{quote(name, safe='/')}"
        response = await self._request("GET", route, missing_ok=True)
        if response is None:
            raise PathNotFound(name)
        return self._decode(route, response, Path)

    async def list_sessions(self, kind: str, items_per_page: int = ITEMS_PER_PAGE) -> list[Session]:
        """Every item of ``/v3/<kind>/list`` (a ``SESSION_KINDS`` entry); empty if that server is off."""
        return await self._list(f"/v3/{kind}/list", Session, items_per_page, missing_ok=True)

    async def kick(self, kind: str, session_id: str) -> bool:
        """``POST /v3/<kind>/kick/<id>``; False when the session had already gone."""
        route = f"/v3/{kind}/kick/{quote(session_id, safe='')}"
        return await self._request("POST", route, missing_ok=True) is not None

    async def add_path_config(self, name: str, values: dict[str, Any]) -> bool:
        """``POST /v3/config/paths/add/<name>``: a path entry with ``values`` (the rest from
        ``pathDefaults``); False when an entry of that name exists already (left as it is)."""
        route = f"/v3/config/paths/add/{quote(name, safe='')}"
        try:
            await self._request("POST", route, body=values, missing_ok=False)
        except MediaMTXBadResponse as exc:
            if exc.status == 400 and exc.message == "path already exists":
                return False
            raise
        return True

    async def delete_path_config(self, name: str) -> bool:
        """``DELETE /v3/config/paths/delete/<name>``; False when there was no such entry."""
        route = f"/v3/config/paths/delete/{quote(name, safe='')}"
        return await self._request("DELETE", route, missing_ok=True) is not None

    async def _list(self, route: str, item: type[T], items_per_page: int, *, missing_ok: bool) -> list[T]:
        """Every item of a list route, page after page (empty for a 404 if ``missing_ok``)."""
        items: list[T] = []
        page = 0
        while (answer := await self._page(route, item, page, items_per_page, missing_ok=missing_ok)) is not None:
            items.extend(answer.items)
            page += 1
            if page >= answer.pageCount:
                break
        return items

    async def _page(
        self, route: str, item: type[T], page: int, items_per_page: int, *, missing_ok: bool
    ) -> Page[T] | None:
        params = {"page": str(page), "itemsPerPage": str(items_per_page)}
        response = await self._request("GET", route, params, missing_ok=missing_ok)
        return None if response is None else self._decode(route, response, Page[item])  # type: ignore[valid-type]

    async def _request(
        self, method: str, route: str, params: dict[str, str] | None = None, *, missing_ok: bool,
        body: dict[str, Any] | None = None,
    ) -> httpx.Response | None:
        """The 200 answer, ``None`` for a 404 if ``missing_ok``; raises a ``MediaMTXError`` otherwise."""
        url = self.base_url + route
        headers = {}
        if self._token is not None:
            token = self._token()
            if inspect.isawaitable(token):
                token = await token
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = await self._http.request(method, route, params=params, headers=headers, json=body)
        except httpx.TransportError as exc:
            raise MediaMTXUnavailable(url, str(exc) or type(exc).__name__) from None
        if response.status_code == 401:
            raise MediaMTXUnauthorized(url, challenged="www-authenticate" in response.headers)
        if response.status_code == 404 and missing_ok:
            return None
        if response.status_code != 200:
            raise MediaMTXBadResponse(url, response.status_code, _error_text(response))
        return response

    def _decode(self, route: str, response: httpx.Response, kind: type[T]) -> T:
        try:
            return msgspec.json.decode(response.content, type=kind)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise MediaMTXBadResponse(self.base_url + route, 200, f"unexpected body: {exc}") from None


def _error_text(response: httpx.Response) -> str:
    """MediaMTX's ``{"status":"error","error":…}`` message, else the start of the body."""
    try:
        return msgspec.json.decode(response.content, type=_ApiError).error or response.text[:200]
    except (msgspec.DecodeError, msgspec.ValidationError):
        return response.text[:200]

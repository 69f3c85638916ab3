"""Client of MediaMTX's control API v3: the gateway asks it whether a stream is really live.

Field names are MediaMTX's own (shared/MEDIAMTX.md §3). The Structs ignore fields they do not
name, so a newer MediaMTX that adds some does not break the gateway.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import NamedTuple, Self, TypeVar
from urllib.parse import quote

import httpx
import msgspec

__all__ = [
    "CodecProps",
    "MediaMTXBadResponse",
    "MediaMTXClient",
    "MediaMTXError",
    "MediaMTXUnauthorized",
    "MediaMTXUnavailable",
    "Path",
    "PathHealth",
    "PathList",
    "PathNotFound",
    "PathReader",
    "PathSource",
    "Track",
    "path_health",
]

TokenSource = Callable[[], str | Awaitable[str]]
"""Gives the bearer token for the next request (a JWT allowing MediaMTX's ``api`` action)."""

T = TypeVar("T")

VIDEO_CODECS = frozenset(
    {"AV1", "VP9", "VP8", "H265", "H264", "MPEG-4 Video", "MPEG-1/2 Video", "M-JPEG"}
)


class MediaMTXError(Exception):
    """Base of every error this client raises."""


class MediaMTXUnavailable(MediaMTXError):
    """MediaMTX's API could not be reached (refused, timed out, connection dropped)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"MediaMTX control API at {url} is unreachable ({reason}); is MediaMTX running "
            "with `api: yes`?"
        )


class MediaMTXUnauthorized(MediaMTXError):
    """MediaMTX refused the API call: no token (``challenged``) or a token it rejected."""

    def __init__(self, url: str, *, challenged: bool) -> None:
        self.url = url
        self.challenged = challenged
        why = "no credentials were sent" if challenged else "the service token was rejected"
        super().__init__(f"MediaMTX control API at {url} answered 401: {why}")


class PathNotFound(MediaMTXError):
    """MediaMTX knows no path of this name (or it is an idle, on-demand path)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"MediaMTX has no path {name!r}")


class MediaMTXBadResponse(MediaMTXError):
    """An answer that is not what API v3 promises: another status, or a body that fails to decode."""

    def __init__(self, url: str, status: int, message: str) -> None:
        self.url = url
        self.status = status
        self.message = message
        super().__init__(f"MediaMTX control API at {url} answered {status}: {message}")


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
    codecProps: CodecProps | None = None


class Path(msgspec.Struct, frozen=True):
    """One item of ``/v3/paths/list`` (camelCase names are MediaMTX's JSON keys)."""

    name: str
    confName: str = ""
    available: bool = False
    availableTime: str | None = None
    online: bool = False
    onlineTime: str | None = None
    source: PathSource | None = None
    tracks2: list[Track] = []
    readers: list[PathReader] = []
    inboundBytes: int = 0
    outboundBytes: int = 0
    inboundFramesInError: int = 0


class PathList(msgspec.Struct, frozen=True):
    itemCount: int
    pageCount: int
    items: list[Path]


class _ApiError(msgspec.Struct):
    error: str = ""


class PathHealth(NamedTuple):
    live: bool
    codec: str
    profile: str
    readers: int


def path_health(path: Path) -> PathHealth:
    """Whether a real source feeds the path, its video codec and profile, and how many read it.

    ``online`` matters besides ``available``: with ``alwaysAvailable`` an offline filler is
    available but not live.
    """
    video = next((t for t in path.tracks2 if t.codec in VIDEO_CODECS), None)
    props = video.codecProps if video is not None else None
    return PathHealth(
        live=path.available and path.online,
        codec=video.codec if video is not None else "",
        profile=str(props.profile) if props is not None else "",
        readers=len(path.readers),
    )


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
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def list_paths_page(self, page: int = 0, items_per_page: int = 100) -> PathList:
        """One page (0-based) of ``GET /v3/paths/list``."""
        params = {"page": str(page), "itemsPerPage": str(items_per_page)}
        return await self._get("/v3/paths/list", PathList, params=params)

    async def list_paths(self, items_per_page: int = 100) -> list[Path]:
        """Every path MediaMTX reports, following the pages; sorted by name as MediaMTX sorts."""
        first = await self.list_paths_page(0, items_per_page)
        items = list(first.items)
        for page in range(1, first.pageCount):
            items.extend((await self.list_paths_page(page, items_per_page)).items)
        return items

    async def get_path(self, name: str) -> Path:
        """``GET /v3/paths/get/<name>``; raises ``PathNotFound`` when MediaMTX answers 404."""
        if not name:
            raise ValueError("a MediaMTX path name cannot be empty")
        return await self._get(f"/v3/paths/get/{quote(name, safe='/')}", Path, missing=name)

    async def _get(
        self,
        route: str,
        kind: type[T],
        *,
        params: dict[str, str] | None = None,
        missing: str | None = None,
    ) -> T:
        url = self.base_url + route
        headers = {}
        if self._token is not None:
            token = self._token()
            if inspect.isawaitable(token):
                token = await token
            headers["Authorization"] = f"Bearer {token}"
        try:
            response = await self._http.get(route, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise MediaMTXUnavailable(url, str(exc) or type(exc).__name__) from exc
        if response.status_code == 401:
            challenged = "www-authenticate" in response.headers
            raise MediaMTXUnauthorized(url, challenged=challenged)
        if response.status_code == 404 and missing is not None:
            raise PathNotFound(missing)
        if response.status_code != 200:
            raise MediaMTXBadResponse(url, response.status_code, _error_text(response))
        try:
            return msgspec.json.decode(response.content, type=kind)
        except msgspec.DecodeError as exc:
            raise MediaMTXBadResponse(url, 200, f"unexpected body: {exc}") from exc


def _error_text(response: httpx.Response) -> str:
    """MediaMTX's ``{"status":"error","error":…}`` message, else the start of the body."""
    try:
        return msgspec.json.decode(response.content, type=_ApiError).error or response.text[:200]
    except msgspec.DecodeError:
        return response.text[:200]

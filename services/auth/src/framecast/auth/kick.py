"""Ending the live MediaMTX sessions of a revoked token, once across every auth instance.

Why: MediaMTX asks the hook only when a session starts and never re-checks an open one
(docs/mediamtx.md, "Auth hook"), so denying a revoked jti stops new sessions but not the ones
it already opened. Those are ended through the control API (docs/mediamtx.md, "Control API"):
list every kind of session, keep those on the revoked token's paths, and kick each.

Which sessions: a token's MediaMTX path permissions say where it may read or publish, not
which session it opened (the API does not show credentials). So revoking a viewer token
ends every reading session on its paths; viewers whose own tokens are still valid are let
straight back in by the hook, the revoked one is not. A publishing session is ended only for
a token that may publish there: a viewer's revocation must not take the stream down for
everyone. ``idle`` sessions (RTSP after SETUP, before PLAY/RECORD) are ended for either,
because PLAY and RECORD are not re-authorised ("Auth hook"). RTSP connections have no kick
route; kicking their session is what stops the media.

One kick per revocation: each revocation entry in the bucket is claimed by creating the key
``kick.<jti>.<revision>`` in the same bucket. JetStream creates a key only if it does not
exist, so exactly one instance wins, whichever instances are running; the claim lives as
long as the revocation (the bucket's TTL), and revoking the same jti again is a new revision,
hence a new claim and a new round of kicks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from urllib.parse import quote

import httpx
import msgspec
import nats.errors
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from .keys import KeyStoreError
from .permissions import path_matches

log = logging.getLogger(__name__)

CLAIM_PREFIX = "kick."
"""Bucket keys under this prefix are kick claims, not revoked jtis (jtis never contain ``.``)."""
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
"""Every control-API collection with list and kick routes ("Control API"); MediaMTX registers a
collection's routes only while its server is enabled, so a 404 on a list means "none"."""
ITEMS_PER_PAGE = 100


class Revocation(msgspec.Struct, frozen=True, kw_only=True):
    """The value of a revoked jti in the revocation bucket (JSON, written by ``framecast token revoke``).

    Paths are permission paths as in a token (permissions.py): an exact name, ``""`` for any path, or
    ``~regex``.
    """

    expires_at: float
    """When the token expires; after that the hook refuses it anyway."""
    paths: tuple[str, ...] = ()
    """Where the token may read: reading sessions there are ended."""
    publish_paths: tuple[str, ...] = ()
    """Where the token may publish: the publishing session there is ended (its readers with it)."""

    def ends(self, session: Session) -> bool:
        """Whether ``session`` may have been opened with the revoked token."""
        if not session.path:
            return False
        reads = any(path_matches(p, session.path) for p in self.paths)
        publishes = any(path_matches(p, session.path) for p in self.publish_paths)
        if session.state == "publish":
            return publishes
        if session.state in ("read", ""):  # HLS sessions carry no state: they only read
            return reads
        return reads or publishes


class Session(msgspec.Struct, frozen=True):
    """One item of a session or connection list: only what choosing a kick needs."""

    id: str
    path: str = ""
    state: str = ""


class _Page(msgspec.Struct, frozen=True):
    pageCount: int  # noqa: N815 - MediaMTX's key
    items: list[Session]


class _ApiError(msgspec.Struct):
    error: str = ""


_page_decoder = msgspec.json.Decoder(_Page)
_revocation_decoder = msgspec.json.Decoder(Revocation)
_revocation_encoder = msgspec.json.Encoder()


def encode_revocation(revocation: Revocation) -> bytes:
    return _revocation_encoder.encode(revocation)


def decode_revocation(value: bytes | None) -> Revocation | None:
    """The entry's ``Revocation``, or ``None`` when it holds none (the jti is revoked all the same)."""
    try:
        return _revocation_decoder.decode(value or b"")
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def claim_key(jti: str, revision: int) -> str:
    """The key whose creation claims the kicks of revision ``revision`` of ``jti``'s entry."""
    return f"{CLAIM_PREFIX}{jti}.{revision}"


class MediaMTXError(Exception):
    """Base of the errors of the control-API client."""


class MediaMTXUnavailable(MediaMTXError):
    """The control API could not be reached (refused, timed out, connection dropped)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"MediaMTX control API at {url} is unreachable ({reason})")


class MediaMTXRefused(MediaMTXError):
    """The control API answered, but not with what API v3 promises (401 included)."""

    def __init__(self, url: str, status: int, message: str) -> None:
        self.url = url
        self.status = status
        self.message = message
        super().__init__(f"MediaMTX control API at {url} answered {status}: {message}")


class ControlAPI:
    """The two control-API calls a kick needs, authenticated with a fresh service token each."""

    def __init__(self, base_url: str, token: Callable[[], str], *, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def sessions(self, kind: str) -> list[Session]:
        """Every item of ``/v3/<kind>/list``, following the pages; empty if the server is off."""
        items: list[Session] = []
        page = 0
        while True:
            params = {"page": str(page), "itemsPerPage": str(ITEMS_PER_PAGE)}
            response = await self._call("GET", f"/v3/{kind}/list", params)
            if response is None:
                return items
            try:
                answer = _page_decoder.decode(response.content)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise MediaMTXRefused(str(response.url), 200, f"unexpected body: {exc}") from None
            items.extend(answer.items)
            page += 1
            if page >= answer.pageCount:
                return items

    async def kick(self, kind: str, session_id: str) -> bool:
        """``POST /v3/<kind>/kick/<id>``; False when the session had already gone."""
        return await self._call("POST", f"/v3/{kind}/kick/{quote(session_id, safe='')}") is not None

    async def _call(self, method: str, route: str, params: dict[str, str] | None = None) -> httpx.Response | None:
        """The 200 answer, ``None`` for a 404; raises ``MediaMTXError`` for anything else."""
        url = self.base_url + route
        headers = {"Authorization": f"Bearer {self._token()}"}
        try:
            response = await self._http.request(method, route, params=params, headers=headers)
        except httpx.TransportError as exc:
            raise MediaMTXUnavailable(url, str(exc) or type(exc).__name__) from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise MediaMTXRefused(url, response.status_code, _error_text(response))
        return response


def _error_text(response: httpx.Response) -> str:
    """MediaMTX's ``{"status":"error","error":…}`` message, else the start of the body."""
    try:
        return msgspec.json.decode(response.content, type=_ApiError).error or response.text[:200]
    except (msgspec.DecodeError, msgspec.ValidationError):
        return response.text[:200]


async def end_sessions(api: ControlAPI, revocation: Revocation) -> list[tuple[str, str]]:
    """Kick every live session ``revocation`` covers; returns ``(kind, id)`` of those ended."""
    ended: list[tuple[str, str]] = []
    for kind in SESSION_KINDS:
        for session in await api.sessions(kind):
            if revocation.ends(session) and await api.kick(kind, session.id):
                ended.append((kind, session.id))
    return ended


class Kicker:
    """Ends the sessions of each revocation handed to it, if this instance claims it first.

    Revocations are handled one at a time, in order, by ``run`` (a child task of the service),
    so the KV watch never waits for MediaMTX. Nothing here stops the service: an unreachable
    MediaMTX is logged once (until it answers again), and the revocation holds for new
    sessions anyway. A claim is taken before MediaMTX is called, so if this instance cannot
    reach MediaMTX the sessions stay up until the token is revoked again.
    """

    def __init__(self, kv: KeyValue, api: ControlAPI, instance: str) -> None:
        self.kv = kv
        self.api = api
        self.instance = instance
        self._queue: asyncio.Queue[tuple[str, int, Revocation]] = asyncio.Queue()
        self._unreachable = False

    def submit(self, jti: str, revision: int, revocation: Revocation) -> None:
        """Queue revision ``revision`` of ``jti``'s revocation (called by the bucket mirror)."""
        if revocation.paths or revocation.publish_paths:
            self._queue.put_nowait((jti, revision, revocation))

    async def run(self) -> None:
        while True:
            jti, revision, revocation = await self._queue.get()
            if await self._claim(jti, revision):
                await self._end(jti, revocation)

    async def _claim(self, jti: str, revision: int) -> bool:
        try:
            await self.kv.create(claim_key(jti, revision), self.instance.encode())
        except KeyWrongLastSequenceError:
            log.info("revoked token %s: its live sessions are ended by another auth instance", jti)
            return False
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning("revoked token %s: cannot claim the kick of its live sessions (%s); not ending them",
                        jti, exc)
            return False
        return True

    async def _end(self, jti: str, revocation: Revocation) -> None:
        try:
            ended = await end_sessions(self.api, revocation)
        except MediaMTXUnavailable as exc:
            if self._unreachable:
                log.debug("MediaMTX still unreachable; live sessions of revoked token %s not ended", jti)
            else:
                self._unreachable = True
                log.warning("%s: live sessions of revoked token %s were not ended (new ones are denied)", exc, jti)
            return
        except (MediaMTXError, KeyStoreError) as exc:
            log.warning("%s: live sessions of revoked token %s were not ended (new ones are denied)", exc, jti)
            return
        if self._unreachable:
            self._unreachable = False
            log.info("MediaMTX control API at %s answers again", self.api.base_url)
        log.info("revoked token %s: ended %d live session(s)", jti, len(ended),
                 extra={"jti": jti, "sessions": [f"{kind}/{sid}" for kind, sid in ended]})

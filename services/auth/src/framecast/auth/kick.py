"""Ending the live MediaMTX sessions of a revoked token, once across every auth instance.

Why: MediaMTX asks the hook only when a session starts and never re-checks an open one
(docs/mediamtx.md, "Auth hook"), so denying a revoked jti stops new sessions but not the ones
it already opened. Those are ended through the control API (docs/mediamtx.md, "Control API";
the client is ``framecast.runtime.mediamtx_api``): list every kind of session, keep those on
the revoked token's paths, and kick each.

Which sessions: a token's MediaMTX path permissions say where it may read or publish, not
which session it opened (the API does not show credentials). So revoking a viewer token
ends every reading session on its paths; viewers whose own tokens are still valid are let
straight back in by the hook, the revoked one is not. A publishing session is ended only for
a token that may publish there: a viewer's revocation must not take the stream down for
everyone. ``idle`` sessions (RTSP after SETUP, before PLAY/RECORD) are ended for either,
because PLAY and RECORD are not re-authorised (docs/mediamtx.md, "RTSP"). RTSP connections have no kick route;
kicking their session is what stops the media.

One kick per revocation: each revocation entry in the bucket is claimed by creating the key
``kick.<jti>.<revision>`` in the same bucket. JetStream creates a key only if it does not
exist, so exactly one instance wins, whichever instances are running; the claim lives as
long as the revocation (the bucket's TTL), and revoking the same jti again is a new revision,
hence a new claim and a new round of kicks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import nats.errors
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from framecast.runtime.mediamtx_api import SESSION_KINDS, MediaMTXClient, MediaMTXError, MediaMTXUnavailable

from .keys import KeyStoreError
from .revocation import Revocation, claim_key

log = logging.getLogger(__name__)

async def end_sessions(api: MediaMTXClient, revocation: Revocation) -> list[tuple[str, str]]:
    """Kick every live session ``revocation`` covers; returns ``(kind, id)`` of those ended."""
    ended: list[tuple[str, str]] = []
    for kind in SESSION_KINDS:
        for session in await api.list_sessions(kind):
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

    def __init__(self, kv: KeyValue, apis: Sequence[MediaMTXClient], instance: str) -> None:
        """``apis``: the control API of every MediaMTX node (a token's sessions may be on any)."""
        self.kv = kv
        self.apis = list(apis)
        self.instance = instance
        self._queue: asyncio.Queue[tuple[str, int, Revocation]] = asyncio.Queue()
        self._unreachable: set[str] = set()  # base URLs of the APIs that did not answer last time

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
        for api in self.apis:
            await self._end_on(api, jti, revocation)

    async def _end_on(self, api: MediaMTXClient, jti: str, revocation: Revocation) -> None:
        try:
            ended = await end_sessions(api, revocation)
        except MediaMTXUnavailable as exc:
            if api.base_url in self._unreachable:
                log.debug("MediaMTX still unreachable; live sessions of revoked token %s not ended", jti)
            else:
                self._unreachable.add(api.base_url)
                log.warning("%s: live sessions of revoked token %s were not ended (new ones are denied)", exc, jti)
            return
        except (MediaMTXError, KeyStoreError) as exc:
            log.warning("%s: live sessions of revoked token %s were not ended (new ones are denied)", exc, jti)
            return
        if api.base_url in self._unreachable:
            self._unreachable.discard(api.base_url)
            log.info("MediaMTX control API at %s answers again", api.base_url)
        log.info("revoked token %s: ended %d live session(s)", jti, len(ended),
                 extra={"jti": jti, "sessions": [f"{kind}/{sid}" for kind, sid in ended]})

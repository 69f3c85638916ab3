"""Revocation: the bucket of revoked jtis, its in-memory mirror, and revoking a token.

Why: a token stays valid until it expires, so denying it sooner needs state every auth
instance shares. Revoked jtis are keys of a JetStream KV bucket; each instance mirrors the
bucket in memory, so the hook asks ``is_revoked`` without a network round trip. Entries age
out of the bucket after the longest token lifetime, and the mirror forgets each one once its
token has expired anyway (``prune``). Each new revocation is also handed on (to kick.py) so
the token's live MediaMTX sessions end: MediaMTX never re-checks an open session.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import re
import time
from collections.abc import Callable

import msgspec
import nats.errors
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.kv import newest_revision, watch_all
from framecast.proto.store import open_bucket
from framecast.runtime.mediamtx_api import Session

from .keys import KeyStore
from .permissions import path_matches
from .settings import AuthSettings
from .tokens import TokenVerifier

log = logging.getLogger("framecast.auth")

REVOKED_BUCKET = subjects.REVOKED_BUCKET
REVOKED_TTL_S = 86400 + 600
"""How long a revocation is kept: past the longest token lifetime the key store allows."""
_JTI = re.compile(r"[A-Za-z0-9_=-]{1,256}")
"""jtis that are valid bucket keys and cannot collide with the ``kick.`` claims; ours are 12 of these."""

RESYNC_RETRY_S = 0.5
"""How soon the mirror reads the bucket again after its watch failed."""
LAG_CHECK_S = 0.25
"""How often the mirror asks the server for the bucket's newest revision. A watch can stall with
the connection up (the bucket's leader lost in a cluster: nats-py notices only after its idle
heartbeats, about ten seconds); a revision the server had two checks ago that the watch has
still not delivered means the mirror may be missing a revocation: it fails closed and reads the
bucket again at once. So no revocation goes unseen for longer than about three checks; two, not
one, so that a watch merely slowed by a busy machine is not read again for nothing."""
REREAD_STALL_S = 2.0
"""A read of the bucket (after a lost connection or a dead watch) that delivers nothing for this
long is started again: a watch created while JetStream is coming back can be dead from the
start, and nats-py would notice only after its idle heartbeats while the hook fails closed."""

CLAIM_PREFIX = "kick."
"""Bucket keys under this prefix are kick claims, not revoked jtis (jtis never contain ``.``)."""


class Revocation(msgspec.Struct, frozen=True, kw_only=True):
    """The value of a revoked jti in the revocation bucket (JSON, written by ``framecast token revoke``).

    Paths are permission paths as in a token (docs/mediamtx.md, "JWT"): an exact name, ``""``
    for any path, or ``~regex``.
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


OnRevoked = Callable[[str, int, Revocation], None]
"""``on_revoked(jti, revision, revocation)``: a revocation whose live sessions may need ending."""


class RevocationError(ValueError):
    """A jti that cannot be revoked (not a valid key of the revocation bucket)."""

    def __init__(self, jti: str) -> None:
        self.jti = jti
        super().__init__(f"cannot revoke jti {jti[:80]!r}: expected 1-256 letters, digits, '_', '=' or '-'")


async def revoked_bucket(bus: Bus) -> KeyValue:
    """The revocation bucket; entries expire after the longest token lifetime."""
    return await open_bucket(bus, REVOKED_BUCKET, ttl=REVOKED_TTL_S, description="framecast revoked token ids (jti)")


async def revoke(bus: Bus, jti: str, revocation: Revocation) -> int:
    """Deny token ``jti`` from now on and end its live sessions; returns the entry's revision.

    Every auth instance's hook checks the bucket's mirror, and one of them kicks the sessions
    ``revocation`` names. Revoking a jti again replaces its record and kicks again.
    """
    if not _JTI.fullmatch(jti):
        raise RevocationError(jti)
    kv = await revoked_bucket(bus)
    return await kv.put(jti, encode_revocation(revocation))


def revocation_of_token(token: str, keystore: KeyStore, settings: AuthSettings) -> tuple[str, Revocation]:
    """The jti and revocation record of a whole token; raises ``TokenError`` unless we signed it.

    Time is not checked: an expired token's sessions may still be open, and revoking it is
    how they end. Signature, issuer and audience are: only our own tokens go into the bucket.
    """
    verifier = TokenVerifier(keystore, settings.auth_issuer, settings.auth_audience, leeway_s=math.inf)
    verified = verifier.verify(token)
    reads = tuple(dict.fromkeys(p.path for p in verified.permissions if p.action in ("read", "playback")))
    publishes = tuple(dict.fromkeys(p.path for p in verified.permissions if p.action == "publish"))
    return verified.jti, Revocation(expires_at=verified.expires_at, paths=reads, publish_paths=publishes)


class Revocations:
    """An in-memory mirror of the revoked-jti bucket, kept current by a KV watch.

    ``on_revoked(jti, revision, revocation)`` is called for every revocation that may still
    have live sessions to end: each one put after the mirror synced, and, at start-up, each
    one no instance has claimed yet (put while no auth instance ran). Kick claims (keys under
    ``kick.``) share the bucket and are not revoked jtis.
    """

    def __init__(self, kv: KeyValue, on_revoked: OnRevoked) -> None:
        self.kv = kv
        self.on_revoked = on_revoked
        self.revoked: dict[str, float] = {}  # jti -> when its token expires anyway
        self.synced = asyncio.Event()
        self.certain = True
        """False from a lost NATS connection until the mirror has re-read the whole bucket: a
        revocation may have been written meanwhile, so the hook fails closed (``None``)."""
        self._applied = 0  # the newest bucket revision the mirror has applied
        self._delivered_at = 0.0  # when the watch last delivered an entry (monotonic)
        self._connected = True
        self._resync = asyncio.Event()

    def is_revoked(self, jti: str) -> bool | None:
        """The hook's check: answered from memory, so cheap and synchronous; ``None`` while the
        mirror may be missing a revocation (after a lost NATS connection, until re-read)."""
        if jti in self.revoked:
            return True
        return False if self.certain else None

    def __contains__(self, jti: str) -> bool:
        return jti in self.revoked

    def connection_lost(self) -> None:
        """NATS is gone: revocations may be written that this mirror will not hear of (on
        another node of a cluster, or as soon as a restarted server is back, before this
        connection is). Fail closed until the bucket has been read again: a stream that is
        already publishing stays on air (MediaMTX never asks again), only new sessions wait."""
        self.certain = False
        self._connected = False

    def connection_back(self) -> None:
        """NATS is back: read the bucket again now, rather than wait for nats-py to notice its
        watch died with the server (seconds, during which a new revocation would go unseen)."""
        self._connected = True
        self._resync.set()

    def prune(self, now: float | None = None) -> int:
        """Forget revocations of tokens that have expired by now (the bucket's entries age out
        without telling watchers, so the mirror must forget on its own); returns how many."""
        now = time.time() if now is None else now
        expired = [jti for jti, expires_at in self.revoked.items() if expires_at < now]
        for jti in expired:
            del self.revoked[jti]
        return len(expired)

    async def follow(self) -> None:
        """Mirror the bucket until cancelled; ``synced`` is set once it holds every entry that
        was there at the start, so the hook never answers before it knows every revocation.
        After a lost connection the bucket is read again from the start."""
        while True:
            self._resync.clear()
            watching = asyncio.create_task(self._watch())
            resync = asyncio.create_task(self._resync.wait())
            checking = asyncio.create_task(self._check_current())
            try:
                await asyncio.wait({watching, resync, checking}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (watching, resync, checking):
                    task.cancel()
                await asyncio.gather(watching, resync, checking, return_exceptions=True)
            self.certain = False
            if watching.done() and not watching.cancelled() and (error := watching.exception()) is not None:
                # e.g. JetStream not back yet after a restart: read again shortly, failing closed
                log.warning("revocation mirror: %s; reading the bucket again", error or type(error).__name__)
                await asyncio.sleep(RESYNC_RETRY_S)

    async def _check_current(self) -> None:
        """Return when the watch has fallen behind the server (LAG_CHECK_S), or a read of the
        bucket has stalled (REREAD_STALL_S): then the bucket is read again. A check the server
        cannot answer (no leader: no revocation can be written either) leaves the last answer
        standing."""
        targets = collections.deque([0, 0], maxlen=2)  # the server's newest revision, two checks ago first
        started = time.monotonic()
        while True:
            await asyncio.sleep(LAG_CHECK_S)
            stalled_for = time.monotonic() - max(started, self._delivered_at)
            if not self.certain and self._connected and stalled_for > REREAD_STALL_S:
                log.warning("revocation mirror: reading the bucket has delivered nothing for %.0f s; "
                            "reading it again", REREAD_STALL_S)
                return
            if self.synced.is_set() and self.certain and self._applied < targets[0]:
                log.warning("revocation mirror: the bucket is at revision %d and its watch has not delivered it; "
                            "failing closed while reading the bucket again", targets[0])
                return
            newest = targets[-1]
            with contextlib.suppress(TimeoutError, nats.errors.Error):
                async with asyncio.timeout(2 * LAG_CHECK_S):
                    newest = await newest_revision(self.kv)
            targets.append(newest)

    async def _watch(self) -> None:
        loading: dict[str, tuple[int, Revocation | None]] = {}
        claims: set[str] = set()
        async for entry in watch_all(self.kv):
            if entry is None:
                self._synced(loading, claims)
                self.certain = True
            else:
                self._apply(entry, loading, claims)

    def _apply(self, entry: KeyValue.Entry, loading: dict[str, tuple[int, Revocation | None]],
               claims: set[str]) -> None:
        revision = entry.revision or 0
        self._delivered_at = time.monotonic()
        seen_before = revision <= self._applied  # a re-read after a lost connection: not new
        self._applied = max(self._applied, revision)
        if entry.key.startswith(CLAIM_PREFIX):
            if not self.synced.is_set():
                claims.add(entry.key)
        elif entry.operation in (KV_DEL, KV_PURGE):
            self.revoked.pop(entry.key, None)
            loading.pop(entry.key, None)
        else:
            record = (entry.revision or 0, decode_revocation(entry.value))
            self.revoked[entry.key] = record[1].expires_at if record[1] else time.time() + REVOKED_TTL_S
            if self.synced.is_set():
                if not seen_before:
                    self._submit(entry.key, *record)
            else:
                loading[entry.key] = record

    def _synced(self, loading: dict[str, tuple[int, Revocation | None]], claims: set[str]) -> None:
        """The initial values are in: hand over those nobody claimed, then follow live."""
        for jti, (revision, revocation) in loading.items():
            if claim_key(jti, revision) not in claims:
                self._submit(jti, revision, revocation)
        loading.clear()
        claims.clear()
        self.synced.set()

    def _submit(self, jti: str, revision: int, revocation: Revocation | None) -> None:
        if revocation is None:
            log.warning("revoked token %s has no readable revocation record; its live sessions are not ended", jti)
        else:
            self.on_revoked(jti, revision, revocation)

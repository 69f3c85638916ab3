"""Signing keys kept in a directory, their rotation, and the JWKS that publishes them.

Why: the tokens we sign must verify both in our HTTP hook and in MediaMTX's own
``authMethod: jwt``, which fetches the JWKS lazily, caches it for one hour and does not
refetch on an unknown ``kid`` (docs/mediamtx.md, "JWT"). So a new key is published at least
an hour before it signs anything, and a retired key stays published until every token it
signed has expired.

Algorithm: ES256 (ECDSA on P-256 with SHA-256). MediaMTX parses JWKS keys with
MicahParks/jwkset, which accepts ``kty: EC`` with ``crv`` P-256/P-384/P-521 and ``kty: OKP``
with ``crv: Ed25519``; golang-jwt verifies both ES256 and EdDSA. Measured on this project's
2-core machine with pyjwt 2.15.1 / cryptography 50 (median of 5 runs of 3000 calls; claims
with two 64-character paths)::

    ES256  sign  33 us   verify 101 us   token 636 bytes
    EdDSA  sign  36 us   verify 119 us   token 636 bytes
    RS256  sign 272 us   verify  62 us   token 892 bytes (2048-bit key)

Verification runs inside MediaMTX's serialized path-manager loop and signing on every token
request: ES256 is the cheaper of the two compact choices on both counts and the most widely
supported (WebCrypto, every JOSE library). RS256 verifies faster, but its tokens are 40%
longer and RTSP caps a request line at 2047 bytes.

``kid`` is the RFC 7638 thumbprint of the public JWK (43 base64url characters): it names
exactly one key and anyone holding the JWKS can recompute it.

On disk: one PKCS#8 PEM file per key (mode 0600) in a 0700 directory, and ``index.json``
(kid, alg, created_at, not_before_signing, retired_at, expires_at), replaced atomically.
The running auth service owns the directory, but ``framecast auth rotate-key`` writes it from
another process: every read first checks whether ``index.json`` was replaced (one ``stat``)
and reloads it if so, so the service publishes a key rotated elsewhere at once. The lock below
only orders threads inside one process.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt
import msgspec
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from framecast.proto.errors import FramecastError

logger = logging.getLogger(__name__)

ALGORITHM = "ES256"
DEFAULT_PUBLISH_AHEAD_S = 3600.0 + 300.0
"""MediaMTX caches the JWKS for an hour; a new key signs only after that, plus a margin."""
DEFAULT_MAX_TOKEN_TTL_S = 86400.0
"""The longest token lifetime the issuer accepts (``TokenRequest.ttl_s`` allows a day)."""
DEFAULT_ROTATE_EVERY_S = 7 * 86400.0
"""How long each key signs before ``maintain`` brings in its successor."""
DEFAULT_RETENTION_MARGIN_S = 300.0
"""Added to a retired key's time in the JWKS, for clock skew and verifier leeway."""

Clock = Callable[[], float]
"""Wall-clock seconds since the epoch (``time.time``); injected so tests control time."""

_INDEX = "index.json"
_KID = re.compile(r"[A-Za-z0-9_-]{43}")


class KeyStoreError(FramecastError):
    """The key directory cannot be read, written or trusted; ``path`` names the culprit."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        self.detail = detail
        super().__init__(f"{path}: {detail}")


class KeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the index says about one key: its times, never its material."""

    kid: str
    alg: str
    created_at: float
    not_before_signing: float
    retired_at: float | None = None
    expires_at: float | None = None

    def published(self, now: float) -> bool:
        """Whether the key belongs in the JWKS (and may verify tokens) at ``now``."""
        return self.expires_at is None or now < self.expires_at


class _Index(msgspec.Struct, kw_only=True):
    version: int = 1
    keys: list[KeyRecord] = []


@dataclass(frozen=True)
class StoredKey:
    """One key pair. ``repr()`` shows the record and never the private key."""

    record: KeyRecord
    public_key: ec.EllipticCurvePublicKey = field(repr=False, compare=False)
    _private: ec.EllipticCurvePrivateKey = field(repr=False, compare=False)

    @property
    def kid(self) -> str:
        return self.record.kid

    def public_jwk(self) -> dict[str, str]:
        """The JWKS entry: public members plus kid, alg and use."""
        return {**_public_members(self.public_key), "kid": self.kid, "alg": ALGORITHM, "use": "sig"}

    def sign(self, claims: Mapping[str, Any]) -> str:
        """A compact JWS over ``claims`` with this key's ``kid`` in the header."""
        return jwt.encode(dict(claims), self._private, algorithm=ALGORITHM, headers={"kid": self.kid})


def thumbprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url without padding)."""
    canonical = json.dumps(_public_members(public_key), separators=(",", ":"), sort_keys=True)
    return _b64url(hashlib.sha256(canonical.encode()).digest())


class KeyStore:
    """The key directory: loads it (an empty one gets a key that signs at once), rotates, publishes.

    Every method taking ``now`` reads the injected clock when it is omitted.
    """

    def __init__(
        self,
        directory: Path,
        *,
        clock: Clock = time.time,
        publish_ahead_s: float = DEFAULT_PUBLISH_AHEAD_S,
        max_token_ttl_s: float = DEFAULT_MAX_TOKEN_TTL_S,
        rotate_every_s: float | None = DEFAULT_ROTATE_EVERY_S,
        retention_margin_s: float = DEFAULT_RETENTION_MARGIN_S,
    ) -> None:
        if publish_ahead_s < 0 or max_token_ttl_s <= 0 or retention_margin_s < 0:
            raise ValueError("key store durations must not be negative (max_token_ttl_s > 0)")
        if rotate_every_s is not None and rotate_every_s <= publish_ahead_s:
            raise ValueError("rotate_every_s must be longer than publish_ahead_s (or None: never)")
        self.directory = directory
        self.clock = clock
        self.publish_ahead_s = publish_ahead_s
        self.max_token_ttl_s = max_token_ttl_s
        self.rotate_every_s = rotate_every_s
        self.retention_margin_s = retention_margin_s
        self._lock = threading.RLock()
        self._ensure_directory()
        self._index_seen: tuple[int, int, int] | None = None
        self._keys: tuple[StoredKey, ...] = self._load()
        now = clock()
        if not self._keys:
            first = self._create(created_at=now, not_before_signing=now)
            self._save((first,))
            logger.info("created the first signing key %s", first.kid)
        self.prune(now)

    def __repr__(self) -> str:
        return f"KeyStore({str(self.directory)!r}, kids={[k.kid for k in self._keys]!r})"

    def signing_key(self, now: float | None = None) -> StoredKey:
        """The newest key whose activation time has passed."""
        now = self._now(now)
        self._refresh()
        for key in reversed(self._keys):
            if key.record.not_before_signing <= now:
                return key
        raise KeyStoreError(self.directory, "no key is active for signing yet")

    def verification_key(self, kid: str, now: float | None = None) -> ec.EllipticCurvePublicKey | None:
        """The public key named ``kid`` if it is published at ``now``; ``None`` otherwise."""
        now = self._now(now)
        self._refresh()
        for key in self._keys:
            if key.kid == kid and key.record.published(now):
                return key.public_key
        return None

    def records(self) -> tuple[KeyRecord, ...]:
        """Every key's record, oldest activation first (expired ones until pruned)."""
        self._refresh()
        return tuple(k.record for k in self._keys)

    def jwks(self, now: float | None = None) -> dict[str, list[dict[str, str]]]:
        """``{"keys": [...]}``: the current key, the next one and retired ones not yet expired."""
        now = self._now(now)
        self._refresh()
        return {"keys": [k.public_jwk() for k in self._keys if k.record.published(now)]}

    def rotate(self, now: float | None = None) -> StoredKey:
        """Create the next key: published at once, signing from ``now + publish_ahead_s``.

        The key signing now retires when its successor activates and leaves the JWKS once
        the longest-lived token it could have signed has expired. Returns the waiting key
        unchanged when one already exists.
        """
        with self._lock:
            now = self._now(now)
            self.prune(now)  # reloads a rotation made by another process first
            newest = self._keys[-1]
            if newest.record.not_before_signing > now:
                return newest
            activation = now + self.publish_ahead_s
            expires = activation + self.max_token_ttl_s + self.retention_margin_s
            kept = tuple(
                key
                if key.record.retired_at is not None
                else StoredKey(
                    msgspec.structs.replace(key.record, retired_at=activation, expires_at=expires),
                    key.public_key,
                    key._private,
                )
                for key in self._keys
            )
            new = self._create(created_at=now, not_before_signing=activation)
            try:
                self._save((*kept, new))
            except KeyStoreError:  # the index still names the keys before: no stray key file
                with contextlib.suppress(OSError):
                    (self.directory / f"{new.kid}.pem").unlink()
                raise
            logger.info("created signing key %s, signing from %s", new.kid, _iso(activation))
            return new

    def prune(self, now: float | None = None) -> tuple[str, ...]:
        """Forget keys whose tokens have all expired, deleting their files; returns their kids."""
        with self._lock:
            now = self._now(now)
            self._refresh()
            gone = tuple(k.kid for k in self._keys if not k.record.published(now))
            if not gone:
                return ()
            self._save(tuple(k for k in self._keys if k.record.published(now)))
            for kid in gone:
                with contextlib.suppress(FileNotFoundError):
                    (self.directory / f"{kid}.pem").unlink()
            logger.info("removed expired signing keys %s", ", ".join(gone))
            return gone

    def maintain(self, now: float | None = None) -> StoredKey | None:
        """Prune, and rotate when the signing key is due for a successor; for a periodic task.

        A successor is created ``publish_ahead_s`` before the signing key reaches
        ``rotate_every_s`` of service, so each key signs for about ``rotate_every_s``; with
        ``rotate_every_s=None`` only ``rotate`` (``framecast auth rotate-key``) brings one in.
        """
        with self._lock:
            now = self._now(now)
            self.prune(now)
            if self.rotate_every_s is None:
                return None
            newest = self._keys[-1].record
            if newest.not_before_signing > now:
                return None
            if now - newest.not_before_signing < self.rotate_every_s - self.publish_ahead_s:
                return None
            return self.rotate(now)

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else now

    def _index_identity(self) -> tuple[int, int, int] | None:
        """What changes when ``index.json`` is replaced: inode, size, modification time."""
        try:
            info = (self.directory / _INDEX).stat()
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def _refresh(self) -> None:
        """Reload the keys if another process (``framecast auth rotate-key``) replaced the index."""
        if self._index_identity() == self._index_seen:
            return
        with self._lock:
            seen = self._index_identity()
            if seen == self._index_seen or seen is None:
                return
            try:
                keys = self._load()
            except KeyStoreError as exc:
                logger.warning("kept the keys loaded before: the replaced key index cannot be used (%s)", exc)
                return
            if keys:
                before = {k.kid for k in self._keys}
                self._keys = keys
                if added := [k.kid for k in keys if k.kid not in before]:
                    logger.info("reloaded the key directory: new key(s) %s", ", ".join(added))

    def _ensure_directory(self) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = self.directory.stat().st_mode
        except OSError as exc:
            raise KeyStoreError(self.directory, f"cannot create the key directory: {exc.strerror}") from None
        if mode & 0o077:
            logger.warning(
                "key directory %s is accessible to other users (mode %o)", self.directory, mode & 0o777
            )

    def _load(self) -> tuple[StoredKey, ...]:
        index_path = self.directory / _INDEX
        self._index_seen = self._index_identity()
        try:
            data = index_path.read_bytes()
        except FileNotFoundError:
            return ()
        except OSError as exc:
            raise KeyStoreError(index_path, f"cannot read: {exc.strerror}") from None
        try:
            index = msgspec.json.decode(data, type=_Index)
        except msgspec.DecodeError as exc:
            raise KeyStoreError(index_path, f"not a key index: {exc}") from None
        keys = tuple(self._load_key(record) for record in index.keys)
        if len({k.kid for k in keys}) != len(keys):
            raise KeyStoreError(index_path, "a kid appears twice")
        return tuple(sorted(keys, key=lambda k: k.record.not_before_signing))

    def _load_key(self, record: KeyRecord) -> StoredKey:
        if not _KID.fullmatch(record.kid):
            raise KeyStoreError(self.directory / _INDEX, f"invalid kid {record.kid!r}")
        if record.alg != ALGORITHM:
            raise KeyStoreError(
                self.directory / _INDEX, f"key {record.kid} has unsupported alg {record.alg!r}"
            )
        path = self.directory / f"{record.kid}.pem"
        try:
            if path.stat().st_mode & 0o077:
                logger.warning("key file %s is accessible to other users", path)
            private = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise KeyStoreError(path, f"cannot read: {exc.strerror}") from None
        except (ValueError, TypeError):
            raise KeyStoreError(path, "not an unencrypted PEM private key") from None
        if not isinstance(private, ec.EllipticCurvePrivateKey) or not isinstance(private.curve, ec.SECP256R1):
            raise KeyStoreError(path, "not a P-256 key")
        public = private.public_key()
        if thumbprint(public) != record.kid:
            raise KeyStoreError(path, "the key does not match its kid")
        return StoredKey(record, public, private)

    def _create(self, *, created_at: float, not_before_signing: float) -> StoredKey:
        private = ec.generate_private_key(ec.SECP256R1())
        public = private.public_key()
        record = KeyRecord(
            kid=thumbprint(public),
            alg=ALGORITHM,
            created_at=created_at,
            not_before_signing=not_before_signing,
        )
        pem = private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path = self.directory / f"{record.kid}.pem"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise KeyStoreError(path, f"cannot write: {exc.strerror}") from None
        try:
            with os.fdopen(fd, "wb") as file:
                os.fchmod(file.fileno(), 0o600)
                file.write(pem)
                file.flush()
                os.fsync(file.fileno())
        except OSError as exc:  # a full disk: leave no truncated key behind
            with contextlib.suppress(OSError):
                path.unlink()
            raise KeyStoreError(path, f"cannot write: {exc.strerror}") from None
        return StoredKey(record, public, private)

    def _save(self, keys: tuple[StoredKey, ...]) -> None:
        """Write the index atomically (temporary file, fsync, rename), then adopt ``keys``."""
        data = msgspec.json.format(msgspec.json.encode(_Index(keys=[k.record for k in keys])), indent=2)
        index_path = self.directory / _INDEX
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".index.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(tmp, index_path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            raise KeyStoreError(index_path, f"cannot write: {exc.strerror}") from None
        self._index_seen = self._index_identity()
        self._keys = tuple(sorted(keys, key=lambda k: k.record.not_before_signing))


def _public_members(public_key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    """The RFC 7638 required members of an EC P-256 JWK, coordinates padded to 32 bytes."""
    numbers = public_key.public_numbers()
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": _b64url(numbers.x.to_bytes(32, "big")),
        "y": _b64url(numbers.y.to_bytes(32, "big")),
    }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")

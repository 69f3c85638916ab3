"""The key directory: files and permissions, reloading, the JWKS over time, and rotation."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import stat
from pathlib import Path
from typing import TYPE_CHECKING

import jwt
import pytest

from framecast.auth import TokenError, TokenIssuer, TokenVerifier
from framecast.auth.keys import (
    DEFAULT_MAX_TOKEN_TTL_S,
    DEFAULT_PUBLISH_AHEAD_S,
    DEFAULT_RETENTION_MARGIN_S,
    DEFAULT_ROTATE_EVERY_S,
    KeyStore,
    KeyStoreError,
)

if TYPE_CHECKING:
    from conftest import FakeClock

RETENTION = DEFAULT_MAX_TOKEN_TTL_S + DEFAULT_RETENTION_MARGIN_S


def kids(keystore: KeyStore) -> list[str]:
    return [key["kid"] for key in keystore.jwks()["keys"]]


def rfc7638(jwk: dict[str, str]) -> str:
    """The thumbprint computed from the published JWK alone, as any consumer would."""
    members = {name: jwk[name] for name in ("crv", "kty", "x", "y")}
    digest = hashlib.sha256(json.dumps(members, separators=(",", ":"), sort_keys=True).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_an_empty_directory_gets_one_key_that_signs_at_once(keystore: KeyStore, clock: FakeClock) -> None:
    (jwk,) = keystore.jwks()["keys"]
    assert keystore.signing_key(clock()).kid == jwk["kid"]
    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
    assert jwk["alg"] == "ES256" and jwk["use"] == "sig"
    assert len(base64.urlsafe_b64decode(jwk["x"] + "=")) == 32
    assert len(base64.urlsafe_b64decode(jwk["y"] + "=")) == 32
    assert "d" not in jwk
    assert jwk["kid"] == rfc7638(jwk)


def test_key_files_are_private_and_the_index_describes_them(
    keystore: KeyStore, key_dir: Path, clock: FakeClock
) -> None:
    kid = keystore.signing_key().kid
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    pem = key_dir / f"{kid}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert pem.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    index = json.loads((key_dir / "index.json").read_text())
    assert index["keys"] == [
        {
            "kid": kid,
            "alg": "ES256",
            "created_at": clock(),
            "not_before_signing": clock(),
            "retired_at": None,
            "expires_at": None,
        }
    ]


def test_reopening_the_directory_keeps_the_keys(keystore: KeyStore, key_dir: Path, clock: FakeClock) -> None:
    token = TokenIssuer(keystore, "i", "a", clock).issue_viewer("cam1", "alice").token
    keystore.rotate()
    reopened = KeyStore(key_dir, clock=clock)
    assert kids(reopened) == kids(keystore)
    assert reopened.records() == keystore.records()
    assert TokenVerifier(reopened, "i", "a", clock=clock).verify(token).subject == "alice"


def test_a_rotation_made_by_another_process_is_published_at_once(
    keystore: KeyStore, key_dir: Path, clock: FakeClock
) -> None:
    """``framecast auth rotate-key`` runs beside the service: the service's JWKS lists the next
    key, and its hook verifies tokens that key signs, without a restart (issue 15)."""
    current = keystore.signing_key().kid
    elsewhere = KeyStore(key_dir, clock=clock)  # what the CLI opens
    new = elsewhere.rotate()
    assert kids(keystore) == [current, new.kid]
    assert keystore.records() == elsewhere.records()
    assert keystore.signing_key().kid == current  # the next key signs only after publish_ahead_s
    clock.advance(DEFAULT_PUBLISH_AHEAD_S)
    assert keystore.signing_key().kid == new.kid
    token = TokenIssuer(elsewhere, "i", "a", clock).issue_viewer("cam1", "alice").token
    assert TokenVerifier(keystore, "i", "a", clock=clock).verify(token).subject == "alice"
    assert keystore.rotate().kid != new.kid  # the service's own rotation builds on the reloaded keys


def test_a_broken_index_written_elsewhere_keeps_the_keys_loaded(
    keystore: KeyStore, key_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    jwks = keystore.jwks()
    (key_dir / "index.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="framecast.auth.keys"):
        assert keystore.jwks() == jwks
        assert keystore.jwks() == jwks
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1, "warned once"
    assert "cannot be used" in caplog.records[0].message


def test_jwks_is_what_a_jose_library_can_use(keystore: KeyStore, clock: FakeClock) -> None:
    keystore.rotate()
    token = TokenIssuer(keystore, "i", "a", clock).issue_publisher("cam1", "encoder").token
    key_set = jwt.PyJWKSet.from_dict(keystore.jwks())
    kid = jwt.get_unverified_header(token)["kid"]
    claims = jwt.decode(
        token,
        key_set[kid].key,
        algorithms=["ES256"],
        audience="a",
        issuer="i",
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},  # the clock is fake
    )
    assert claims["mediamtx_permissions"] == [{"action": "publish", "path": "cam1"}]


def test_no_key_material_in_repr_or_logs(
    keystore: KeyStore, key_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keystore.rotate()
    KeyStore(key_dir, clock=clock)
    for key in (keystore.signing_key(), keystore.rotate()):
        pem = (key_dir / f"{key.kid}.pem").read_text()
        secret = pem.splitlines()[1]
        for text in (repr(key), str(key), repr(keystore), caplog.text):
            assert "PRIVATE" not in text
            assert secret[:16] not in text


def test_next_key_is_published_an_hour_before_it_signs(keystore: KeyStore, clock: FakeClock) -> None:
    first = keystore.signing_key()
    clock.advance(1000)
    rotated_at = clock()
    following = keystore.rotate()
    assert kids(keystore) == [first.kid, following.kid]
    assert following.record.not_before_signing == rotated_at + DEFAULT_PUBLISH_AHEAD_S
    assert DEFAULT_PUBLISH_AHEAD_S > 3600
    clock.advance(DEFAULT_PUBLISH_AHEAD_S - 1)
    assert keystore.signing_key().kid == first.kid
    assert keystore.rotate().kid == following.kid, "rotating again while a key waits changes nothing"
    clock.advance(1)
    assert keystore.signing_key().kid == following.kid
    assert kids(keystore) == [first.kid, following.kid]


def test_retired_key_stays_published_until_its_tokens_expire(
    keystore: KeyStore, key_dir: Path, clock: FakeClock
) -> None:
    issuer = TokenIssuer(keystore, "i", "a", clock)
    verifier = TokenVerifier(keystore, "i", "a", clock=clock, leeway_s=0)
    old = keystore.signing_key()
    new = keystore.rotate()
    activation = new.record.not_before_signing
    clock.now = activation - 1
    longest = issuer.issue_viewer("cam1", "last-of-old", ttl=int(DEFAULT_MAX_TOKEN_TTL_S))
    assert longest.kid == old.kid
    clock.now = activation
    newer = issuer.issue_viewer("cam1", "first-of-new")
    assert newer.kid == new.kid
    assert old.record != keystore.records()[0], "the old key now carries its retirement"
    assert keystore.records()[0].retired_at == activation
    assert keystore.records()[0].expires_at == activation + RETENTION

    clock.now = longest.expires_at - 1
    assert kids(keystore) == [old.kid, new.kid]
    assert verifier.verify(longest.token).subject == "last-of-old"
    clock.now = activation + RETENTION - 1
    assert kids(keystore) == [old.kid, new.kid]
    clock.now = activation + RETENTION
    assert kids(keystore) == [new.kid]
    with pytest.raises(TokenError) as refused:
        verifier.verify(longest.token)
    assert refused.value.reason == "unknown_kid"
    assert (key_dir / f"{old.kid}.pem").exists()
    assert keystore.prune() == (old.kid,)
    assert not (key_dir / f"{old.kid}.pem").exists()
    assert [r.kid for r in KeyStore(key_dir, clock=clock).records()] == [new.kid]


def test_tokens_signed_before_and_after_rotation_both_verify(keystore: KeyStore, clock: FakeClock) -> None:
    issuer = TokenIssuer(keystore, "i", "a", clock)
    verifier = TokenVerifier(keystore, "i", "a", clock=clock)
    before = issuer.issue_viewer("cam1", "before", ttl=7200)
    keystore.rotate()
    clock.advance(DEFAULT_PUBLISH_AHEAD_S)
    after = issuer.issue_viewer("cam1", "after")
    assert before.kid != after.kid
    assert verifier.verify(before.token).subject == "before"
    assert verifier.verify(after.token).subject == "after"


def test_maintain_rotates_so_each_key_signs_for_rotate_every(keystore: KeyStore, clock: FakeClock) -> None:
    first = keystore.signing_key()
    clock.advance(DEFAULT_ROTATE_EVERY_S - DEFAULT_PUBLISH_AHEAD_S - 1)
    assert keystore.maintain() is None
    clock.advance(1)
    following = keystore.maintain()
    assert following is not None
    assert following.record.not_before_signing == first.record.not_before_signing + DEFAULT_ROTATE_EVERY_S
    assert keystore.maintain() is None, "a successor is already waiting"
    clock.advance(DEFAULT_PUBLISH_AHEAD_S)
    assert keystore.signing_key().kid == following.kid
    clock.advance(RETENTION)
    keystore.maintain()
    assert kids(keystore) == [following.kid]


@pytest.mark.usefixtures("keystore")
def test_a_corrupt_index_is_refused(key_dir: Path) -> None:
    (key_dir / "index.json").write_text("{not json")
    with pytest.raises(KeyStoreError, match="not a key index"):
        KeyStore(key_dir)


def test_a_key_file_that_does_not_match_its_kid_is_refused(keystore: KeyStore, key_dir: Path) -> None:
    first = keystore.signing_key().kid
    second = keystore.rotate().kid
    first_pem = (key_dir / f"{first}.pem").read_bytes()
    (key_dir / f"{second}.pem").write_bytes(first_pem)
    with pytest.raises(KeyStoreError, match="does not match its kid"):
        KeyStore(key_dir)


@pytest.mark.usefixtures("keystore")
def test_a_kid_that_is_not_a_thumbprint_is_refused(key_dir: Path) -> None:
    index = json.loads((key_dir / "index.json").read_text())
    index["keys"][0]["kid"] = "../../etc/passwd"
    (key_dir / "index.json").write_text(json.dumps(index))
    with pytest.raises(KeyStoreError, match="invalid kid"):
        KeyStore(key_dir)


def test_a_missing_key_file_is_refused(keystore: KeyStore, key_dir: Path) -> None:
    (key_dir / f"{keystore.signing_key().kid}.pem").unlink()
    with pytest.raises(KeyStoreError, match="cannot read"):
        KeyStore(key_dir)


def test_rotation_must_outlast_the_publication_delay(key_dir: Path) -> None:
    with pytest.raises(ValueError, match="rotate_every_s"):
        KeyStore(key_dir, rotate_every_s=3600, publish_ahead_s=3900)


def test_with_automatic_rotation_off_only_an_operator_brings_in_the_next_key(key_dir: Path, clock: FakeClock) -> None:
    """Replicas sharing keys copied from one Secret must not each rotate their own copy."""
    keystore = KeyStore(key_dir, clock=clock, rotate_every_s=None)
    first = keystore.signing_key().kid
    clock.advance(10 * DEFAULT_ROTATE_EVERY_S)
    assert keystore.maintain() is None
    assert kids(keystore) == [first] and keystore.signing_key().kid == first
    following = keystore.rotate()
    clock.advance(DEFAULT_PUBLISH_AHEAD_S)
    assert keystore.signing_key().kid == following.kid

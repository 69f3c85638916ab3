"""Issuing tokens, and every way a forged token must fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from framecast.auth import KeyStore, TokenError, TokenIssuer, TokenRequestError, TokenVerifier
from framecast.proto.messages import TokenRequest

if TYPE_CHECKING:
    from conftest import FakeClock, MakeClaims

RTSP_LINE_LIMIT = 2047  # gortsplib v5.6.4, docs/mediamtx.md, "RTSP"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(value: dict[str, Any]) -> str:
    return b64(json.dumps(value, separators=(",", ":")).encode())


def reason_for(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(TokenError) as refused:
        verifier.verify(token)
    return refused.value.reason


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


# ----- issuing ------------------------------------------------------------------------------


def test_viewer_token_reads_and_plays_back_one_stream(
    issuer: TokenIssuer, keystore: KeyStore, clock: FakeClock
) -> None:
    issued = issuer.issue_viewer("cam1", "viewer:alice")
    header, claims = unverified(issued.token)
    assert header == {"alg": "ES256", "kid": keystore.signing_key().kid, "typ": "JWT"}
    assert issued.kid == header["kid"]
    now = int(clock())
    assert claims["iss"] == "framecast-auth" and claims["aud"] == "mediamtx"
    assert claims["sub"] == "viewer:alice"
    assert claims["iat"] == now and claims["nbf"] <= now and claims["exp"] == now + 300
    assert issued.expires_at == now + 300
    assert len(claims["jti"]) == 16 and claims["jti"].isalnum()  # never read as a command-line option
    assert claims["mediamtx_permissions"] == [
        {"action": "read", "path": "cam1"},
        {"action": "playback", "path": "cam1"},
    ]


def test_publisher_token_only_publishes(issuer: TokenIssuer) -> None:
    _, claims = unverified(issuer.issue_publisher("cam1", "encoder-1", ttl=60).token)
    assert claims["mediamtx_permissions"] == [{"action": "publish", "path": "cam1"}]
    assert claims["exp"] - claims["iat"] == 60


def test_service_token_names_only_service_actions(issuer: TokenIssuer) -> None:
    _, claims = unverified(issuer.issue_service("gateway", ["api", "metrics", "api"]).token)
    assert claims["mediamtx_permissions"] == [{"action": "api"}, {"action": "metrics"}]
    with pytest.raises(TokenRequestError):
        issuer.issue_service("gateway", ["api", "read"])
    with pytest.raises(TokenRequestError):
        issuer.issue_service("gateway", [])


@pytest.mark.parametrize("stream_id", ["", "a/b", "cam 1", "x" * 65, "~cam", "cam1?token=x"])
def test_only_stream_ids_become_paths(issuer: TokenIssuer, stream_id: str) -> None:
    with pytest.raises(TokenRequestError):
        issuer.issue_viewer(stream_id, "alice")


@pytest.mark.parametrize("ttl", [0, -5, 86401])
def test_ttl_is_bounded_by_the_key_retention(issuer: TokenIssuer, ttl: int) -> None:
    with pytest.raises(TokenRequestError):
        issuer.issue_publisher("cam1", "encoder", ttl=ttl)


def test_a_subject_is_required(issuer: TokenIssuer) -> None:
    with pytest.raises(TokenRequestError):
        issuer.issue_viewer("cam1", "")


def test_token_requests_from_the_bus(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    viewer = issuer.issue_for(TokenRequest(role="viewer", stream_id="cam1", subject="gateway:alice"))
    publisher = issuer.issue_for(TokenRequest(role="publisher", stream_id="cam1", ttl_s=120))
    assert verifier.verify(viewer.token).grants("read", "cam1")
    verified = verifier.verify(publisher.token)
    assert verified.grants("publish", "cam1") and not verified.grants("read", "cam1")
    assert verified.subject == "publisher:cam1"
    assert verified.expires_at - unverified(publisher.token)[1]["iat"] == 120


def test_jtis_are_unique(issuer: TokenIssuer) -> None:
    jtis = {unverified(issuer.issue_viewer("cam1", "a").token)[1]["jti"] for _ in range(200)}
    assert len(jtis) == 200


def test_publisher_token_fits_an_rtsp_request_line_with_room_to_spare(issuer: TokenIssuer) -> None:
    path = "p" * 64
    token = issuer.issue_publisher(path, "encoder-" + "e" * 40).token
    line = f"ANNOUNCE rtsp://mediamtx.framecast.internal:8554/{path}?token={token} RTSP/1.0"
    assert len(line) < RTSP_LINE_LIMIT // 2, len(line)
    basic = "Basic " + base64.b64encode(f"publisher:{token}".encode()).decode()
    assert len(basic) < RTSP_LINE_LIMIT // 2, len(basic)


# ----- verifying ----------------------------------------------------------------------------


def test_a_valid_token_verifies(issuer: TokenIssuer, verifier: TokenVerifier, keystore: KeyStore) -> None:
    issued = issuer.issue_viewer("cam1", "alice")
    verified = verifier.verify(issued.token)
    assert verified.subject == "alice"
    assert verified.kid == keystore.signing_key().kid
    assert verified.expires_at == issued.expires_at
    assert verified.grants("read", "cam1") and verified.grants("playback", "cam1")
    assert not verified.grants("read", "cam2") and not verified.grants("publish", "cam1")
    assert not verified.grants("api", "")


def test_alg_none_is_refused(keystore: KeyStore, verifier: TokenVerifier, make_claims: MakeClaims) -> None:
    kid = keystore.signing_key().kid
    token = f"{segment({'alg': 'none', 'kid': kid})}.{segment(make_claims())}."
    assert reason_for(verifier, token) == "bad_algorithm"
    assert reason_for(verifier, token + b64(b"x" * 64)) == "bad_algorithm"


@pytest.mark.parametrize("key_form", ["pem", "jwk", "der"])
def test_hs256_signed_with_the_public_key_is_refused(
    keystore: KeyStore, verifier: TokenVerifier, make_claims: MakeClaims, key_form: str
) -> None:
    key = keystore.signing_key()
    secret = {
        "pem": key.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "jwk": json.dumps(key.public_jwk()).encode(),
        "der": key.public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }[key_form]
    signing_input = f"{segment({'alg': 'HS256', 'kid': key.kid, 'typ': 'JWT'})}.{segment(make_claims())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    assert reason_for(verifier, f"{signing_input}.{b64(mac)}") == "bad_algorithm"


@pytest.mark.parametrize("alg", ["ES384", "ES512", "EdDSA", "RS256", "PS256", "HS512", "ES256K", "es256"])
def test_every_other_algorithm_is_refused(
    keystore: KeyStore, verifier: TokenVerifier, make_claims: MakeClaims, alg: str
) -> None:
    kid = keystore.signing_key().kid
    token = f"{segment({'alg': alg, 'kid': kid})}.{segment(make_claims())}.{b64(b'x' * 64)}"
    assert reason_for(verifier, token) == "bad_algorithm"


def test_a_foreign_key_using_our_kid_fails_the_signature(
    keystore: KeyStore, verifier: TokenVerifier, make_claims: MakeClaims
) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    kid = keystore.signing_key().kid
    token = jwt.encode(make_claims(), attacker, algorithm="ES256", headers={"kid": kid})
    assert reason_for(verifier, token) == "bad_signature"
    with_jwk = jwt.encode(
        make_claims(),
        attacker,
        algorithm="ES256",
        headers={"kid": kid, "jwk": json.loads(jwt.algorithms.ECAlgorithm.to_jwk(attacker.public_key()))},
    )
    assert reason_for(verifier, with_jwk) == "bad_signature", "an embedded jwk header is never trusted"


def test_unknown_or_missing_kid_is_refused(verifier: TokenVerifier, make_claims: MakeClaims) -> None:
    attacker = ec.generate_private_key(ec.SECP256R1())
    assert (
        reason_for(verifier, jwt.encode(make_claims(), attacker, algorithm="ES256", headers={"kid": "x"}))
        == "unknown_kid"
    )
    assert reason_for(verifier, jwt.encode(make_claims(), attacker, algorithm="ES256")) == "unknown_kid"


def test_a_tampered_payload_fails_the_signature(issuer: TokenIssuer, verifier: TokenVerifier) -> None:
    header, payload, signature = issuer.issue_viewer("cam1", "alice").token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["mediamtx_permissions"] = [{"action": "publish", "path": ""}]
    assert reason_for(verifier, f"{header}.{segment(claims)}.{signature}") == "bad_signature"
    assert reason_for(verifier, f"{header}.{payload}.{signature[:-4]}AAAA") == "bad_signature"
    assert reason_for(verifier, f"{header}.{payload}.") == "bad_signature"


@pytest.mark.parametrize(
    ("claims", "offset", "reason"),
    [
        # MediaMTX (golang-jwt v5 defaults): valid while nbf <= now < exp, no leeway, whole seconds.
        ({"exp": 0}, 0.0, "expired"),
        ({"exp": 0}, -0.001, None),
        ({"exp": 1}, 0.999, None),
        ({"exp": 0.9}, 0.5, "expired"),  # exp is cut to the second before it is compared
        ({"exp": -10}, 0.0, "expired"),
        ({"nbf": 0}, 0.0, None),
        ({"nbf": 0}, -0.001, "not_yet_valid"),
        ({"nbf": 0.9}, 0.0, None),  # nbf is cut to the second too
        ({"nbf": 1}, 0.999, "not_yet_valid"),
        ({"iat": 3600}, 0.0, None),  # iat is not checked
        ({"iat": -3600}, 0.0, None),
    ],
)
def test_times_are_judged_as_mediamtx_judges_them(
    keystore: KeyStore,
    verifier: TokenVerifier,
    make_claims: MakeClaims,
    clock: FakeClock,
    claims: dict[str, float],
    offset: float,
    reason: str | None,
) -> None:
    """Relative times: ``now`` is a whole second; the clock then moves by ``offset``."""
    now = int(clock())
    times = {"nbf": now - 60, **{k: now + v for k, v in claims.items()}}
    token = keystore.signing_key().sign(make_claims(**times))
    clock.advance(offset)
    try:
        verifier.verify(token)
    except TokenError as exc:
        assert exc.reason == reason
    else:
        assert reason is None


def test_an_issued_token_expires_exactly_at_exp(
    issuer: TokenIssuer, verifier: TokenVerifier, clock: FakeClock
) -> None:
    token = issuer.issue_viewer("cam1", "alice", ttl=60).token
    clock.advance(59.999)
    assert verifier.verify(token).subject == "alice"
    clock.advance(0.001)
    assert reason_for(verifier, token) == "expired"


def test_a_token_asked_about_again_skips_its_signature_but_not_its_expiry(
    issuer: TokenIssuer, verifier: TokenVerifier, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MediaMTX asks up to three times per viewer join: the signature is checked once."""
    checks = 0
    decode = verifier._jws.decode_complete

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal checks
        checks += 1
        return decode(*args, **kwargs)

    monkeypatch.setattr(verifier._jws, "decode_complete", counted)
    token = issuer.issue_viewer("cam1", "alice", ttl=60).token
    first = verifier.verify(token)
    assert [verifier.verify(token) for _ in range(3)] == [first] * 3 and checks == 1
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert reason_for(verifier, tampered) == "bad_signature" and checks == 2  # another token: checked
    clock.advance(60)
    assert reason_for(verifier, token) == "expired"  # remembered tokens still expire on time


def test_a_remembered_token_is_refused_once_its_key_is_gone(
    issuer: TokenIssuer, verifier: TokenVerifier, keystore: KeyStore, clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    token = issuer.issue_viewer("cam1", "alice", ttl=60).token
    assert verifier.verify(token).subject == "alice"
    monkeypatch.setattr(keystore, "verification_key", lambda kid, now: None)  # retired and pruned
    assert reason_for(verifier, token) == "unknown_kid"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "someone-else"}, "wrong_issuer"),
        ({"iss": None}, "wrong_issuer"),
        ({"aud": "another-mediamtx"}, "wrong_audience"),
        ({"aud": ["x", "y"]}, "wrong_audience"),
        ({"aud": None}, "wrong_audience"),
        ({"exp": None}, "missing_claim"),
        ({"jti": None}, "missing_claim"),
        ({"sub": ""}, "missing_claim"),
        ({"mediamtx_permissions": None}, "missing_claim"),
        ({"exp": "tomorrow"}, "malformed"),
        ({"exp": True}, "malformed"),
        ({"mediamtx_permissions": [{"action": "publish", "paths": "all"}]}, "malformed"),
        ({"mediamtx_permissions": [{"action": "admin", "path": "cam1"}]}, "malformed"),
        ({"mediamtx_permissions": [{"path": "cam1"}]}, "malformed"),
        ({"mediamtx_permissions": {"action": "read"}}, "malformed"),
        ({"mediamtx_permissions": '[{"action":"read","paths":"cam1"}]'}, "malformed"),
        ({"mediamtx_permissions": "not json"}, "malformed"),
    ],
)
def test_bad_claims_are_refused(
    keystore: KeyStore,
    verifier: TokenVerifier,
    make_claims: MakeClaims,
    overrides: dict[str, Any],
    reason: str,
) -> None:
    assert reason_for(verifier, keystore.signing_key().sign(make_claims(**overrides))) == reason


def test_audience_may_be_a_list_and_permissions_a_string(
    keystore: KeyStore, verifier: TokenVerifier, make_claims: MakeClaims
) -> None:
    claims = make_claims(aud=["other", "mediamtx"], mediamtx_permissions='[{"action":"read","path":"cam1"}]')
    assert verifier.verify(keystore.signing_key().sign(claims)).grants("read", "cam1")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "a.b",
        "a.b.c",
        "....",
        "eyJhbGciOiJFUzI1NiJ9",
        "é.é.é",
        "\x00.\x00.\x00",
        "eyJ9.e30.e30",
    ],
)
def test_garbage_is_malformed(verifier: TokenVerifier, token: str) -> None:
    assert reason_for(verifier, token) in {"malformed", "bad_algorithm", "unknown_kid"}


def test_crit_and_b64_headers_are_refused(
    keystore: KeyStore, verifier: TokenVerifier, make_claims: MakeClaims
) -> None:
    key = keystore.signing_key()
    for extra in ({"crit": ["exp"], "exp": 1}, {"b64": False, "crit": ["b64"]}):
        forged = (
            f"{segment({'alg': 'ES256', 'kid': key.kid, **extra})}.{segment(make_claims())}.{b64(b'x' * 64)}"
        )
        assert reason_for(verifier, forged) == "malformed"


def test_an_oversized_token_is_refused_before_parsing(verifier: TokenVerifier, issuer: TokenIssuer) -> None:
    assert reason_for(verifier, "A" * (verifier.max_token_bytes + 1)) == "too_large"
    real = issuer.issue_viewer("cam1", "alice").token
    padded = real + "A" * (verifier.max_token_bytes + 1 - len(real))
    assert reason_for(verifier, padded) == "too_large"


@pytest.mark.parametrize("skew_s", [-30, 30])
def test_services_whose_clocks_differ_by_30_s_accept_each_others_tokens(
    keystore: KeyStore, clock: FakeClock, skew_s: float
) -> None:
    """Two auth instances (or auth and MediaMTX in JWT mode) 30 s apart: a token one of them
    has just issued is valid at the other, at once and until the last of its five minutes."""
    issued = TokenIssuer(keystore, "framecast", "mediamtx", clock=clock).issue_viewer("cam1", "alice")
    other = type(clock)(clock() + skew_s)  # the other service's clock
    verifier = TokenVerifier(keystore, "framecast", "mediamtx", clock=other)
    assert verifier.verify(issued.token).subject == "alice"
    other.advance(issued.expires_at - clock() - skew_s - 1)
    assert verifier.verify(issued.token).subject == "alice"

"""``framecast auth`` (the service, key rotation) and ``framecast token`` (issue, revoke)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from framecast.proto.bus import Bus
from framecast.proto.errors import BusError
from framecast.proto.messages import TokenRequest
from framecast.runtime.lifecycle import run
from framecast.runtime.settings import SettingsError, load

from .keys import DEFAULT_MAX_TOKEN_TTL_S, KeyStore
from .revocation import Revocation, RevocationError, revocation_of_token, revoke
from .service import lifespan
from .settings import AuthSettings
from .tokens import TokenError, TokenIssuer, TokenRequestError


def main() -> int:
    return run("auth", AuthSettings, lifespan)


def _keystore() -> tuple[AuthSettings, KeyStore]:
    settings = load(AuthSettings)
    return settings, KeyStore(Path(settings.key_dir()))


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    auth = commands.add_parser("auth", help="run the auth service (MediaMTX hook, JWKS, token issuance)")
    auth.set_defaults(run=lambda _args: main())
    sub = auth.add_subparsers(dest="auth_command", metavar="COMMAND")
    rotate = sub.add_parser("rotate-key", help="publish the next signing key now; it signs once MediaMTX "
                            "has had time to fetch it (about an hour)")
    rotate.set_defaults(run=_rotate)


def _rotate(_args: argparse.Namespace) -> int:
    try:
        _, keystore = _keystore()
    except SettingsError as exc:
        print(f"framecast auth: {exc}", file=sys.stderr)
        return 2
    key = keystore.rotate()
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(key.record.not_before_signing))
    print(f"next key {key.kid} published in the JWKS; it signs from {when}")
    return 0


def register_token(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    token = commands.add_parser("token", help="issue or revoke MediaMTX tokens (operators)")
    sub = token.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    issue = sub.add_parser("issue", help="print a signed token (uses the local key directory)")
    issue.add_argument("role", choices=["viewer", "publisher", "service"])
    issue.add_argument("stream_id", nargs="?", help="the stream (not for service tokens)")
    issue.add_argument("--subject", default="operator", help="who the token is for (sub claim)")
    issue.add_argument("--ttl", type=int, help="lifetime in seconds")
    issue.set_defaults(run=_issue)
    rev = sub.add_parser(
        "revoke", help="deny a token from now on and end its live MediaMTX sessions (needs NATS)",
        description="Deny a token from now on, and end the live MediaMTX sessions it may have opened "
        "(MediaMTX never re-checks an open session): every reading session on --path, and the publishing "
        "session on --publish-path. Other viewers of those paths are cut too, and let back in when they "
        "reconnect with their own tokens. With --token the jti and paths come from the token itself; it must "
        "be signed by one of our keys, but may have expired (its sessions may still be open).")
    rev.add_argument("jti", nargs="?", help="the token's jti (the audit trail names it)")
    rev.add_argument("--token", metavar="JWT",
                     help="the whole token, instead of JTI and paths ('-' reads it from standard input, "
                          "out of the shell history and process list)")
    rev.add_argument("--path", action="append", default=[], metavar="PATH",
                     help="a MediaMTX path the token reads (repeatable; ~regex and '' as in a permission)")
    rev.add_argument("--publish-path", action="append", default=[], metavar="PATH",
                     help="a MediaMTX path the token publishes on (repeatable)")
    rev.set_defaults(run=_revoke)


def _issue(args: argparse.Namespace) -> int:
    try:
        settings, keystore = _keystore()
        issuer = TokenIssuer(keystore, settings.auth_issuer, settings.auth_audience)
        issued = issuer.issue_for(TokenRequest(role=args.role, stream_id=args.stream_id, ttl_s=args.ttl,
                                               subject=args.subject))
    except (SettingsError, TokenRequestError) as exc:
        print(f"framecast token: {exc}", file=sys.stderr)
        return 2
    print(issued.token)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    if (args.jti is None) == (args.token is None):
        print("framecast token revoke: give a JTI or --token, not both", file=sys.stderr)
        return 2
    if args.token is not None and (args.path or args.publish_path):
        print("framecast token revoke: --path and --publish-path come from the token with --token", file=sys.stderr)
        return 2
    try:
        if args.token is not None:
            settings, keystore = _keystore()
            token = sys.stdin.readline().strip() if args.token == "-" else args.token
            jti, revocation = revocation_of_token(token, keystore, settings)
        else:
            settings = load(AuthSettings)
            jti = args.jti
            revocation = Revocation(expires_at=time.time() + DEFAULT_MAX_TOKEN_TTL_S, paths=tuple(args.path),
                                    publish_paths=tuple(args.publish_path))
    except (SettingsError, TokenError) as exc:
        print(f"framecast token revoke: {exc}", file=sys.stderr)
        return 2

    async def go() -> None:
        bus = await Bus.connect(settings.nats_url, client_id="framecast-token", connect_timeout=3)
        try:
            await revoke(bus, jti, revocation)
        finally:
            await bus.close()

    try:
        asyncio.run(go())
    except RevocationError as exc:
        print(f"framecast token revoke: {exc}", file=sys.stderr)
        return 2
    except BusError as exc:
        print(f"framecast token revoke: {exc}", file=sys.stderr)
        return 1
    where = ", ".join([*revocation.paths, *(f"{p} (publish)" for p in revocation.publish_paths)])
    print(f"revoked {jti}; the auth service ends its live sessions on {where}" if where else f"revoked {jti}")
    return 0


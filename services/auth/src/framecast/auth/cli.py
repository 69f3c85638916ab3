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
from framecast.proto.runtime import run
from framecast.proto.settings import SettingsError, load

from .keys import KeyStore
from .service import AuthSettings, default_key_dir, lifespan, revoke
from .tokens import TokenIssuer, TokenRequestError


def main() -> int:
    return run("auth", AuthSettings, lifespan)


def _keystore() -> tuple[AuthSettings, KeyStore]:
    settings = load(AuthSettings)
    return settings, KeyStore(Path(settings.auth_key_dir or default_key_dir()))


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
    rev = sub.add_parser("revoke", help="deny a token by its jti from now on (needs NATS)")
    rev.add_argument("jti")
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
    async def go() -> None:
        settings = load(AuthSettings)
        bus = await Bus.connect(settings.nats_url, client_id="framecast-token", connect_timeout=3)
        try:
            await revoke(bus, args.jti)
        finally:
            await bus.close()

    try:
        asyncio.run(go())
    except (SettingsError, BusError) as exc:
        print(f"framecast token: {exc}", file=sys.stderr)
        return 1
    print(f"revoked {args.jti}")
    return 0

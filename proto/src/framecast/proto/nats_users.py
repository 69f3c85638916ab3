"""What the SDK inside a CV worker may do on NATS: one list, for the shared and per-worker users.

deploy/nats/users.conf's shared ``sdk`` user is ``sdk_permissions()`` (every stream id, ``*``;
a test holds the file to it). Config-file users in nats-server have no per-connection subject
templates, so keeping one worker off another's streams takes a user per worker with its stream
ids spelled out: ``framecast nats sdk-user NAME STREAM_ID...`` prints one, built from the same
list, for users.conf to include (docs/deploy.md, "NATS users").
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NamedTuple

from . import subjects
from .errors import FramecastError
from .ids import STREAM_ID_RULE, check_stream_id, is_stream_id

SERVICE_USERS = ("auth", "gateway", "encoder", "capture", "sdk", "operator")
"""The users deploy/nats/users.conf defines. A worker's user may not take one of these names:
its inbox (``_INBOX.<name>``) would be theirs."""

ANY = "*"
"""Every stream id: the shared ``sdk`` user's form of each per-stream subject."""

_STATE = f"KV_{subjects.STATE_BUCKET}"  # the JetStream stream behind the state bucket
_EVENTS = subjects.EVENTS_STREAM


class Permissions(NamedTuple):
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


class InvalidSdkUser(FramecastError, ValueError):
    """A per-worker user that cannot be generated (bad name, no stream ids); a bad argument."""

    exit_code = 2


def sdk_permissions(user: str = "sdk", stream_ids: Sequence[str] | None = None) -> Permissions:
    """What producer ``user`` may publish and subscribe: only ``stream_ids``'s subjects and state
    keys (every stream's when ``None``), plus what every producer shares.

    Each entry is a call framecast.capture.Producer makes (through the state store and nats-py).
    Where nats-py's subject carries no key - a KV read by message get, an ordered consumer created
    for a watch - the filter travels in the request's body, which permissions cannot see: those
    stay open to the whole bucket, for reading only. So does updating the history stream's
    settings, which every producer does when it opens the state store.
    """
    keys = [ANY] if stream_ids is None else list(dict.fromkeys(stream_ids))
    publish = [
        subjects.ENCODER_CLAIM,  # announce: a request that one encoder of the queue group answers
        subjects.encoder_claim(ANY),  # ... or the one encoder placement chose
        subjects.ENCODER_PING,  # a new producer asks every encoder for a heartbeat
        *[subject for key in keys for subject in (subjects.stream_control(key), subjects.frames(key))],
        "$JS.API.INFO",  # lookups every framecast user may make: account limits, stream names
        "$JS.API.STREAM.NAMES",
        # StateStore.open: the state bucket and the history stream, created when missing and
        # the history's settings brought up to date (never deleted or purged).
        f"$JS.API.STREAM.INFO.{_STATE}",
        f"$JS.API.STREAM.CREATE.{_STATE}",
        f"$JS.API.STREAM.INFO.{_EVENTS}",
        f"$JS.API.STREAM.CREATE.{_EVENTS}",
        f"$JS.API.STREAM.UPDATE.{_EVENTS}",
        # KV get: a message get (key in the body) on buckets without direct access, a direct get
        # with the key in the subject on buckets with it.
        f"$JS.API.STREAM.MSG.GET.{_STATE}",
        *[f"$JS.API.DIRECT.GET.{_STATE}.{subjects.state_key(key)}" for key in keys],
        # KV watch: nats-py's ordered consumer is unnamed, so it is created on the bare subject
        # (filter in the body); a named consumer puts its filter in the subject.
        f"$JS.API.CONSUMER.CREATE.{_STATE}",
        *[f"$JS.API.CONSUMER.CREATE.{_STATE}.*.{subjects.state_key(key)}" for key in keys],
        f"$JS.API.CONSUMER.INFO.{_STATE}.>",
        f"$JS.FC.{_STATE}.>",  # the watch's flow-control replies
        # Writes: the stream's record and its lifecycle events.
        *[subjects.state_key(key) for key in keys],
        *[subjects.events(key) for key in keys],
    ]
    subscribe = [
        *[subjects.stream_control(key) for key in keys],  # stop requests
        subjects.encoder_heartbeat(ANY),  # the claiming encoder's liveness (ids are the encoders')
        f"{subjects.inbox_prefix(user)}.>",  # replies, JetStream acks and deliveries
    ]
    return Permissions(tuple(publish), tuple(subscribe))


def variable_name(user: str) -> str:
    """``user`` as part of a variable name: upper case, ``-`` as ``_``."""
    return user.upper().replace("-", "_")


def password_variable(user: str) -> str:
    """The environment variable users.conf reads ``user``'s password from."""
    return f"FRAMECAST_NATS_{variable_name(user)}_PASSWORD"


def user_variable(user: str) -> str:
    """The variable a generated file defines ``user`` in, for users.conf's users list."""
    return f"FRAMECAST_SDK_USER_{variable_name(user)}"


def check_user_name(name: str) -> str:
    """``name`` if a worker's user may have it, else :class:`InvalidSdkUser`. The stream-id rule
    makes it one subject token (its inbox) and part of a variable name once upper-cased; it may
    not stand for one of framecast's own users there."""
    if not is_stream_id(name):
        raise InvalidSdkUser(f"{name!r} is not a user name: use {STREAM_ID_RULE}")
    taken = {variable_name(user): user for user in SERVICE_USERS}.get(variable_name(name))
    if taken:  # the same inbox, or the same password variable
        raise InvalidSdkUser(f"{name!r} is taken by framecast's own {taken} user in users.conf; choose another name")
    return name


def _quoted(items: Sequence[str], indent: str) -> str:
    return "".join(f'{indent}"{item}"\n' for item in items)


def sdk_user(name: str, stream_ids: Sequence[str]) -> str:
    """A users.conf fragment defining user ``name``, allowed to produce ``stream_ids`` only:
    what ``framecast nats sdk-user`` prints. ``InvalidSdkUser`` or ``InvalidStreamId`` if not."""
    check_user_name(name)
    if not stream_ids:
        raise InvalidSdkUser("name at least one stream id: the user may produce only the streams it names")
    ids = list(dict.fromkeys(check_stream_id(stream_id) for stream_id in stream_ids))
    permissions = sdk_permissions(name, ids)
    return (
        f"# NATS user {name!r}: a CV worker (framecast SDK) producing {', '.join(ids)} and no other stream.\n"
        f"# Generated by: framecast nats sdk-user {name} {' '.join(ids)}\n"
        f"# Save it beside users.conf as sdk-{name}.conf; in users.conf add `include ./sdk-{name}.conf`\n"
        f"# above `authorization` and ${user_variable(name)} to its users list. Password: the NATS\n"
        f"# server's environment variable {password_variable(name)} (docs/deploy.md, \"NATS users\").\n"
        f"{user_variable(name)} = {{\n"
        f'  user: "{name}"\n'
        f"  password: ${password_variable(name)}\n"
        "  permissions: {\n"
        "    publish: { allow: [\n"
        f"{_quoted(permissions.publish, '      ')}"
        "    ] }\n"
        "    subscribe: { allow: [\n"
        f"{_quoted(permissions.subscribe, '      ')}"
        "    ] }\n"
        "  }\n"
        "}\n"
    )


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``framecast nats sdk-user``: a CV worker's own NATS user, for deploy/nats/users.conf."""
    nats = commands.add_parser("nats", help="NATS users for deploy/nats/users.conf")
    sub = nats.add_subparsers(dest="nats_command", required=True, metavar="COMMAND")
    user = sub.add_parser(
        "sdk-user", help="print a NATS user for one CV worker, allowed only its stream ids",
        description="Print a users.conf fragment defining NATS user NAME, which may produce STREAM_IDs "
                    "and nothing else (docs/deploy.md, \"NATS users\").")
    user.add_argument("name", metavar="NAME", help=f"the worker's NATS user name ({STREAM_ID_RULE})")
    user.add_argument("stream_ids", metavar="STREAM_ID", nargs="*", help="a stream the worker produces")
    user.set_defaults(run=_print_sdk_user)


def _print_sdk_user(args: argparse.Namespace) -> int:
    try:
        text = sdk_user(args.name, args.stream_ids)
    except FramecastError as exc:
        print(f"framecast nats sdk-user: {exc}", file=sys.stderr)
        return exc.exit_code
    sys.stdout.write(text)
    return 0

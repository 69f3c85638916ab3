"""The AsyncAPI 3 document of every subject and message, generated from the catalog."""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import msgspec

from .catalog import CHANNELS


def _tag(message_type: type[Any]) -> str:
    return msgspec.inspect.type_info(message_type).tag or message_type.__name__


def document() -> dict[str, Any]:
    all_types = sorted(
        {t for c in CHANNELS for t in (*c.messages, *c.replies)}, key=lambda t: t.__name__
    )
    _, components = msgspec.json.schema_components(all_types, ref_template="#/components/schemas/{name}")
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for message_type in all_types:
        messages[message_type.__name__] = {
            "name": _tag(message_type),
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{message_type.__name__}"},
        }
    for channel in CHANNELS:
        params = {
            name: {"description": f"the {name.replace('_', ' ')}"}
            for name in ("stream_id", "encoder_id")
            if "{" + name + "}" in channel.address
        }
        entry: dict[str, Any] = {
            "address": channel.address,
            "description": channel.description,
            "messages": {
                m.__name__: {"$ref": f"#/components/messages/{m.__name__}"} for m in channel.messages
            },
        }
        if params:
            entry["parameters"] = params
        channels[channel.key] = entry
        operation: dict[str, Any] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel.key}"},
            "summary": f"sent by {channel.senders}; received by {channel.receivers}",
        }
        if channel.queue:
            operation["x-nats-queue-group"] = channel.queue
        if channel.replies:
            reply_key = channel.key + "Reply"
            channels[reply_key] = {
                "address": None,
                "description": f"Reply to {channel.key} (the request's NATS reply inbox).",
                "messages": {
                    m.__name__: {"$ref": f"#/components/messages/{m.__name__}"} for m in channel.replies
                },
            }
            operation["reply"] = {"channel": {"$ref": f"#/channels/{reply_key}"}}
        operations[channel.key] = operation
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "framecast bus",
            "version": version("framecast-proto"),
            "description": "NATS subjects and messages shared by the framecast services. "
            "Messages are JSON; unknown fields are ignored; a breaking change gets a new tag.",
        },
        "defaultContentType": "application/json",
        "servers": {"nats": {"host": "127.0.0.1:4222", "protocol": "nats"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": components},
    }


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=False) + "\n"


def register(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``framecast proto asyncapi``: the document, for whoever keeps docs/asyncapi.json current."""
    proto = commands.add_parser("proto", help="the bus contracts")
    sub = proto.add_subparsers(dest="proto_command", required=True, metavar="COMMAND")
    doc = sub.add_parser("asyncapi", help="write the AsyncAPI 3 document of every subject")
    doc.add_argument("--output", "-o", type=Path, help="file to write (default: standard output)")
    doc.set_defaults(run=_write)


def _write(args: argparse.Namespace) -> int:
    text = render()
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0

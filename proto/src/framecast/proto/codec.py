"""Encoding and decoding of bus messages, with errors that name the subject and the field.

Decoders are built once per type and cached: building one is far more expensive than using it.
"""

from __future__ import annotations

import functools
import re
from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

_encoder = msgspec.json.Encoder()
_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


class MessageDecodeError(Exception):
    """A message on ``subject`` could not be decoded as the subject's type."""

    def __init__(self, subject: str, field: str | None, detail: str) -> None:
        self.subject = subject
        self.field = field
        self.detail = detail
        where = f" (field {field!r})" if field else ""
        super().__init__(f"bad message on {subject}{where}: {detail}")


def encode(message: msgspec.Struct) -> bytes:
    return _encoder.encode(message)


@functools.cache
def _decoder(type_: Any) -> msgspec.json.Decoder:
    return msgspec.json.Decoder(type_)


def decode(subject: str, data: bytes, type_: type[T] | Any) -> T:
    """Decode ``data`` received on ``subject``; raise ``MessageDecodeError`` when it is not valid."""
    try:
        return _decoder(type_).decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        match = _AT_PATH.search(text)
        field = match.group("path") or None if match else None
        detail = text[: match.start()] if match else text
        raise MessageDecodeError(subject, field, detail) from None
    except msgspec.DecodeError as exc:
        raise MessageDecodeError(subject, None, str(exc)) from None

"""The stream-id rule, in one place: a stream id is a NATS subject token, a KV key and a MediaMTX path."""

from __future__ import annotations

import re

from .errors import FramecastError

STREAM_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
STREAM_ID_RULE = "1 to 64 letters, digits, '_' or '-'"

_STREAM_ID = re.compile(STREAM_ID_PATTERN)


class InvalidStreamId(FramecastError, ValueError):
    """``stream_id`` breaks the rule; a bad argument, so a command exits 2."""

    exit_code = 2

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        super().__init__(f"{stream_id!r} is not a stream id: use {STREAM_ID_RULE}")


def is_stream_id(text: str) -> bool:
    return _STREAM_ID.fullmatch(text) is not None


def check_stream_id(text: str) -> str:
    """``text`` if it is a valid stream id, else :class:`InvalidStreamId`."""
    if not is_stream_id(text):
        raise InvalidStreamId(text)
    return text

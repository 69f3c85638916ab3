"""Reading a JetStream KV bucket without trusting nats-py's end-of-initial-values marker.

Why: nats-py ends ``KeyValue.keys()`` and yields ``None`` from a watcher ("initial values
delivered") when its count of pending and delivered messages says so, and under load it can
say so while values are still in flight: ``keys()`` then reports an empty bucket, and a mirror
built from a watch opens before it holds every entry. Here the server is asked instead: the
bucket's newest revision when the watch starts, and the initial values are in once an entry
at that revision or later has arrived. The watch delivers the last entry of every key, and the
newest one is the last of its key, so it always comes.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from nats.js.kv import KV_DEL, KV_PURGE, KeyValue


async def newest_revision(kv: KeyValue) -> int:
    """The revision of the bucket's newest entry, 0 when it holds none (asked of the server)."""
    state = (await kv.status()).stream_info.state
    return state.last_seq if state.messages else 0


async def watch_all(kv: KeyValue) -> AsyncIterator[KeyValue.Entry | None]:
    """The current entry of every key (deletions included), then ``None`` once every entry present
    at the start has been yielded (a marker to trust, unlike nats-py's), then every change."""
    newest = await newest_revision(kv)
    watcher = await kv.watchall()
    try:
        synced = newest == 0
        if synced:
            yield None
        async for entry in watcher:
            if entry is None:  # nats-py's own marker: not to be trusted
                continue
            yield entry
            if not synced and (entry.revision or 0) >= newest:
                synced = True
                yield None
    finally:
        await watcher.stop()


async def current_entries(kv: KeyValue) -> dict[str, KeyValue.Entry]:
    """Every key's current entry, deleted keys left out: a snapshot taken with ``watch_all``."""
    entries: dict[str, KeyValue.Entry] = {}
    async with contextlib.aclosing(watch_all(kv)) as watch:
        async for entry in watch:
            if entry is None:
                break
            if entry.operation in (KV_DEL, KV_PURGE):
                entries.pop(entry.key, None)
            else:
                entries[entry.key] = entry
    return entries

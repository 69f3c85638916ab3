"""KV reads whose end of initial values is the server's account, not nats-py's marker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from nats.js.kv import KeyValue

from framecast.proto.bus import Bus
from framecast.proto.kv import current_entries, newest_revision, watch_all


async def _bucket(bus: Bus) -> KeyValue:
    return await bus.js.create_key_value(bucket=f"test_kv_{uuid.uuid4().hex[:12]}", history=1)


async def test_an_empty_bucket_is_synced_at_once(bus: Bus) -> None:
    kv = await _bucket(bus)
    assert await newest_revision(kv) == 0
    assert await current_entries(kv) == {}
    async with contextlib.aclosing(watch_all(kv)) as watch:
        assert await asyncio.wait_for(anext(watch), 5) is None


async def test_every_entry_comes_before_the_marker_then_changes_follow(bus: Bus) -> None:
    kv = await _bucket(bus)
    for i in range(200):
        await kv.put(f"k{i}", str(i).encode())
    await kv.delete("k0")
    assert await newest_revision(kv) == 201
    entries = await current_entries(kv)
    assert sorted(entries) == sorted(f"k{i}" for i in range(1, 200))
    assert entries["k7"].value == b"7"
    seen: set[str] = set()
    async with contextlib.aclosing(watch_all(kv)) as watch:
        async for entry in watch:
            if entry is None:
                break
            seen.add(entry.key)
        assert seen == {f"k{i}" for i in range(200)}, "deletions are entries too"
        await kv.put("later", b"x")
        entry = await asyncio.wait_for(anext(watch), 5)
        assert entry is not None and entry.key == "later"

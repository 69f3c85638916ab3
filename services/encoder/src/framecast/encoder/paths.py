"""The settings the encoder gives each stream's MediaMTX path, so viewers keep watching when the
stream's publisher changes.

Why: without them MediaMTX ends every reader's session when a path's publisher goes or is
replaced, and each viewer reconnects (about a second). With ``alwaysAvailable`` the path keeps
its stream: readers stay attached, see MediaMTX's offline filler while no publisher is there,
and the next publisher's pictures as soon as it publishes. A drain, where the old encoder stays
on air until the new one's FFmpeg replaces it (``overridePublisher``), then costs a viewer at
most a keyframe interval; a failover or an FFmpeg restart shows the filler instead of ending
the session (docs/operations.md, "Viewers through a publisher change").

MediaMTX refuses ``alwaysAvailable`` on ``all_others`` and on regex paths, so each stream gets
its own path entry through the control API. It is added before each FFmpeg start, so before the
stream's first publisher: adding it to a path already served under ``all_others`` would recreate
the path and end its sessions. An entry that exists is left alone (another encoder taking the
stream over added it). It is deleted when the stream ends for good. Entries live in MediaMTX's
memory: after MediaMTX restarts, the next FFmpeg start adds them again. Where the control API
does not answer, streams publish as before and viewers reconnect on a publisher change.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from framecast.runtime.mediamtx_api import MediaMTXClient, MediaMTXError
from framecast.runtime.mediamtx_nodes import MediaMTXNode

__all__ = ["STREAM_PATH", "PathEntries"]

log = logging.getLogger("framecast.encoder.paths")

STREAM_PATH: dict[str, Any] = {"alwaysAvailable": True, "alwaysAvailableTracks": [{"codec": "H264"}]}
"""A stream's path entry: always available, with an H264 track (what every encoder publishes)."""
API_TIMEOUT_S = 1.0
"""How long a stream's start waits for the control API before publishing without the entry."""


class PathEntries:
    """Adds and deletes streams' path entries on the node each publishes to."""

    def __init__(self, api: Callable[[MediaMTXNode], MediaMTXClient]) -> None:
        self._api = api
        self._failing: set[str] = set()

    async def prepare(self, node: MediaMTXNode, stream_id: str) -> None:
        """Before an FFmpeg start: the stream's entry on ``node``, unless the API does not answer
        within API_TIMEOUT_S (then one warning per node until it answers again)."""
        if not node.api:
            return
        try:
            async with asyncio.timeout(API_TIMEOUT_S):
                added = await self._api(node).add_path_config(stream_id, STREAM_PATH)
        except (MediaMTXError, TimeoutError) as exc:
            if node.name not in self._failing:
                self._failing.add(node.name)
                log.warning("%s: MediaMTX node %s did not take the path's settings (%s); publishing without: "
                            "viewers reconnect when the stream's publisher changes", stream_id, node.name,
                            exc or "no answer", extra={"stream_id": stream_id})
            return
        self._failing.discard(node.name)
        if added:
            log.debug("%s: path entry added on MediaMTX node %s", stream_id, node.name,
                      extra={"stream_id": stream_id})

    async def forget(self, node: MediaMTXNode, stream_id: str) -> None:
        """The stream has ended for good: its entry on ``node`` goes (quietly, if it cannot)."""
        if not node.api:
            return
        try:
            async with asyncio.timeout(API_TIMEOUT_S):
                await self._api(node).delete_path_config(stream_id)
        except (MediaMTXError, TimeoutError) as exc:
            log.info("%s: its path entry stays on MediaMTX node %s (%s)", stream_id, node.name,
                     exc or "no answer", extra={"stream_id": stream_id})

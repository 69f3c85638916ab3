"""Each stream's bitrate as MediaMTX receives it, for the encoder's statistics.

Why: FFmpeg reports no bitrate for an RTSP output (its byte count reads N/A: there is no file),
so ``StreamStats.bitrate_kbps`` read 0 everywhere it is shown (the API, the stream list, live
events, the metrics). The MediaMTX node a stream publishes to counts the bytes it receives on
the path (``inboundBytes``); once per statistics period the encoder lists each node's paths
(one request per node, with its service token) and reports the rate between two answers. A
node that does not answer within a second leaves its streams at FFmpeg's figure.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from framecast.runtime.mediamtx_api import MediaMTXClient, MediaMTXError
from framecast.runtime.mediamtx_nodes import MediaMTXNode

__all__ = ["IngestMeter"]

API_TIMEOUT_S = 1.0


class IngestMeter:
    """Rates of ``inboundBytes`` between two calls of ``rates``, per stream."""

    def __init__(self, api: Callable[[MediaMTXNode], MediaMTXClient]) -> None:
        self._api = api
        self._last: dict[str, tuple[int, float]] = {}  # stream -> (inboundBytes, when read)

    async def rates(self, streams: Mapping[str, MediaMTXNode]) -> dict[str, float]:
        """kbit/s received for each of ``streams`` (stream id -> its node) since the last call;
        a stream seen for the first time, or whose count went back (a new path), has none yet."""
        by_node: dict[str, MediaMTXNode] = {node.name: node for node in streams.values() if node.api}
        answers = await asyncio.gather(*(self._inbound(node) for node in by_node.values()))
        inbound = dict(zip(by_node, answers, strict=True))
        now = time.monotonic()
        rates: dict[str, float] = {}
        for stream_id, node in streams.items():
            counted = (inbound.get(node.name) or {}).get(stream_id)
            if counted is None:
                continue
            before = self._last.get(stream_id)
            self._last[stream_id] = (counted, now)
            if before is not None and counted >= before[0] and now > before[1]:
                rates[stream_id] = round((counted - before[0]) * 8 / 1000 / (now - before[1]), 1)
        for gone in self._last.keys() - streams.keys():
            del self._last[gone]
        return rates

    async def _inbound(self, node: MediaMTXNode) -> dict[str, int] | None:
        try:
            async with asyncio.timeout(API_TIMEOUT_S):
                return {path.name: path.inboundBytes for path in await self._api(node).list_paths()}
        except (MediaMTXError, TimeoutError):
            return None

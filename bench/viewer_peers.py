"""``python -m bench.viewer_peers whep|hls|mjpeg URL COUNT``: many viewers of one stream, in a child process.

Why a child: on 2 cores, 50 viewers in the benchmark's own event loop would slow capture and
the encoder running there, and their CPU could not be told apart from the rest. The parent
writes one viewer token per line on stdin (tokens stay out of ``ps``), reads one JSON line
saying who joined; each further line it writes (``mark``) is answered with the counts
received so far, so the parent can take rates over its own window; closing stdin stops the
viewers, and a last JSON line gives the totals and why any viewer stopped early.

- ``whep``: aiortc peers (setup as tests.support.whep_bridge: loopback-only ICE, no STUN, H.264
  preferred) POST an offer with ``Authorization: Bearer``, as the player does. The H.264 frames
  they receive are counted, not decoded: a decoder per peer would take the cores the server
  is measured on, and MediaMTX's work (packetising, SRTP, sending) is the same either way.
- ``hls``: MediaMTX's HLS session flow, as hls.js follows it: ``index.m3u8?token=``, followed
  through its redirect to the session's multivariant playlist, then the media playlist polled
  every half segment, and every segment from three behind the newest on (and the init section)
  fetched; a segment already gone (404) is skipped and counted, as a player would skip it.
- ``mjpeg``: an HTTP GET of bench.mjpeg_server's ``multipart/x-mixed-replace`` stream (no
  token: its lines are ignored), reading everything and counting parts by their boundary, not
  decoding them, as the WebRTC peers do not decode.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from typing import Any
from urllib.parse import urljoin

import httpx

POLL_S = 0.5  # half of hlsSegmentDuration (1 s): what hls.js does for a live playlist
LIVE_EDGE = 3  # segments a new viewer starts behind the newest, as hls.js (liveSyncDurationCount)
JOIN_TIMEOUT_S = 30.0


class Counter:
    """Frames (WebRTC) or segments (HLS) and bytes received by all the viewers of this process."""

    def __init__(self) -> None:
        self.units = 0
        self.bytes = 0
        self.missed = 0
        """HLS segments gone (404) before a viewer fetched them: a player skips them, so do we."""


COUNTER = Counter()


def _count_instead_of_decoding() -> None:
    """aiortc decodes every received frame in a thread per peer; count it instead."""
    import aiortc.rtcrtpreceiver

    class CountingDecoder:
        def decode(self, encoded_frame: Any) -> list[Any]:
            COUNTER.units += 1
            COUNTER.bytes += len(encoded_frame.data)
            return []

    aiortc.rtcrtpreceiver.get_decoder = lambda _codec: CountingDecoder()
    receiver = aiortc.rtcrtpreceiver.RTCRtpReceiver
    handle = receiver._handle_rtp_packet

    async def first_packet_sets(self: Any, packet: Any, arrival_time_ms: int) -> None:
        getattr(self, "framecast_first", asyncio.Event()).set()  # this viewer's first media packet
        await handle(self, packet, arrival_time_ms)

    receiver._handle_rtp_packet = first_packet_sets


async def whep_viewer(url: str, token: str, http: httpx.AsyncClient, first: asyncio.Event) -> Any:
    """One WebRTC viewer; returns its peer connection once MediaMTX answered."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    transceiver = pc.addTransceiver("video", direction="recvonly")
    transceiver.setCodecPreferences(
        [c for c in RTCRtpReceiver.getCapabilities("video").codecs if c.mimeType == "video/H264"])
    transceiver.receiver.framecast_first = first
    await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers every candidate first
    reply = await http.post(url, content=pc.localDescription.sdp,
                            headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"})
    reply.raise_for_status()
    await pc.setRemoteDescription(RTCSessionDescription(sdp=reply.text, type="answer"))
    return pc


async def hls_viewer(url: str, token: str, http: httpx.AsyncClient, first: asyncio.Event) -> None:
    """One HLS viewer: runs until cancelled."""
    index = await http.get(f"{url}?token={token}", follow_redirects=True)
    index.raise_for_status()
    media = urljoin(str(index.url), next(ln for ln in index.text.splitlines() if ln and not ln.startswith("#")))
    seen: set[str] | None = None
    while True:
        playlist = await http.get(media)
        playlist.raise_for_status()
        lines = playlist.text.splitlines()
        uris = [ln.split('URI="', 1)[1].split('"', 1)[0] for ln in lines if ln.startswith("#EXT-X-MAP:")]
        segments = [ln for ln in lines if ln and not ln.startswith("#")]
        if seen is None:  # a new viewer starts near the live edge, not at the oldest segment
            seen = set(segments[:-LIVE_EDGE])
        for uri in uris + segments:
            if uri in seen:
                continue
            seen.add(uri)
            segment = await http.get(urljoin(media, uri))
            if segment.status_code == 404:
                COUNTER.missed += 1
                continue
            segment.raise_for_status()
            COUNTER.units += 1
            COUNTER.bytes += len(segment.content)
            first.set()
        await asyncio.sleep(POLL_S)


async def mjpeg_viewer(url: str, first: asyncio.Event) -> None:
    """One MJPEG viewer: reads the multipart stream until cancelled or the server closes it."""
    from .mjpeg_server import BOUNDARY

    host, _, rest = url.removeprefix("http://").partition("/")
    reader, writer = await asyncio.open_connection(*host.split(":"))
    writer.write(f"GET /{rest} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
    marker = b"--" + BOUNDARY
    tail = b""
    try:
        while chunk := await reader.read(1 << 20):
            COUNTER.bytes += len(chunk)
            parts = (tail + chunk).count(marker) - tail.count(marker)
            COUNTER.units += parts
            if parts:
                first.set()
            tail = chunk[-len(marker):]
        raise ConnectionError("the server closed the stream")
    finally:
        writer.close()


def _scrub(text: str) -> str:
    """An error's text without the URL's query (MediaMTX's session URLs carry the token)."""
    return re.sub(r"\?[^\s'\"]*", "?…", text)[:200]


async def main(kind: str, url: str, count: int) -> None:
    tokens = [sys.stdin.readline().strip() for _ in range(count)]
    if kind == "whep":
        from tests.support.whep_bridge import loopback_only_ice

        loopback_only_ice()
        _count_instead_of_decoding()
    http = httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=count + 5))
    firsts = [asyncio.Event() for _ in tokens]
    peers: list[Any] = []
    tasks: list[asyncio.Task[None]] = []
    failures: list[str] = []
    join_ms: list[float] = []

    async def join(token: str, first: asyncio.Event) -> None:
        began = time.monotonic()
        try:
            if kind == "whep":
                peers.append(await whep_viewer(url, token, http, first))
            elif kind == "mjpeg":
                tasks.append(asyncio.create_task(mjpeg_viewer(url, first)))
            else:
                tasks.append(asyncio.create_task(hls_viewer(url, token, http, first)))
            await asyncio.wait_for(first.wait(), JOIN_TIMEOUT_S)
            join_ms.append((time.monotonic() - began) * 1000)
        except Exception as exc:  # a viewer that could not join is reported, the others stay
            failures.append(_scrub(f"{type(exc).__name__}: {exc}"))

    await asyncio.gather(*(join(t, f) for t, f in zip(tokens, firsts, strict=True)))
    print(json.dumps({"joined": len(join_ms), "failures": failures, "join_ms": join_ms}), flush=True)
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):  # "mark", until the parent closes stdin
        print(json.dumps({"units": COUNTER.units, "bytes": COUNTER.bytes, "missed": COUNTER.missed}), flush=True)
    stopped = [_scrub(f"{type(t.exception()).__name__}: {t.exception()}")
               for t in tasks if t.done() and not t.cancelled() and t.exception()]
    stopped += [f"WebRTC {pc.connectionState}" for pc in peers if pc.connectionState in ("failed", "closed")]
    received = {"units": COUNTER.units, "bytes": COUNTER.bytes, "failed_later": len(stopped),
                "failed_later_why": sorted(set(stopped))[:3]}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*(pc.close() for pc in peers), *tasks, return_exceptions=True)
    await http.aclose()
    print(json.dumps(received), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))

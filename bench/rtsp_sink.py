"""An RTSP server that takes many publishers on one port and throws their media away.

The capacity benchmark needs what MediaMTX is to the encoder - one RTSP address accepting a
RECORD per stream path - without decoding anything (MediaMTX forwards packets; it does not
decode), and without MediaMTX, which is not installed here. ``tests.support.rtsp.RtspReceiver``
takes one publisher per port and decodes, so it does not fit. This one answers OPTIONS,
ANNOUNCE, SETUP (RTP interleaved on the TCP connection only), RECORD and TEARDOWN, then reads
the interleaved packets and counts, per path, the RTP packets with the marker bit set on the
video channel: one per access unit, so one per frame of H.264.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections import Counter

_CSEQ = re.compile(rb"^cseq:\s*(\d+)", re.IGNORECASE | re.MULTILINE)
_LENGTH = re.compile(rb"^content-length:\s*(\d+)", re.IGNORECASE | re.MULTILINE)
_TRANSPORT = re.compile(rb"^transport:\s*(.+?)\r$", re.IGNORECASE | re.MULTILINE)


class RtspSink:
    """``async with RtspSink() as sink``: publish to ``sink.url + "/<path>"``; ``frames[path]``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.frames: Counter[str] = Counter()
        self.publishers: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"rtsp://{self.host}:{self.port}"

    async def __aenter__(self) -> RtspSink:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        session = secrets.token_hex(8)
        path = ""
        video_channel = 0
        try:
            while True:
                first = await reader.readexactly(1)
                if first == b"$":  # interleaved packet: $, channel, 16-bit length, RTP packet
                    channel, high, low = await reader.readexactly(3)
                    packet = await reader.readexactly(high << 8 | low)
                    if channel == video_channel and len(packet) > 1 and packet[1] & 0x80:
                        self.frames[path] += 1
                    continue
                head = first + await reader.readuntil(b"\r\n\r\n")
                length = _LENGTH.search(head)
                if length:
                    await reader.readexactly(int(length.group(1)))
                method, _, rest = head.partition(b" ")
                url = rest.split(b" ", 1)[0].decode(errors="replace")
                cseq = _CSEQ.search(head)
                extra = ""
                if method == b"OPTIONS":
                    extra = "Public: OPTIONS, ANNOUNCE, SETUP, RECORD, TEARDOWN\r\n"
                elif method == b"ANNOUNCE":
                    path = url.split("://", 1)[-1].partition("/")[2]
                    self.publishers[path] += 1
                elif method == b"SETUP":
                    transport = _TRANSPORT.search(head)
                    wanted = transport.group(1).decode() if transport else ""
                    if "interleaved" not in wanted:
                        await self._reply(writer, cseq, "461 Unsupported Transport", "")
                        continue
                    if "/streamid=0" in url or "trackID=0" in url:
                        video_channel = int(re.search(r"interleaved=(\d+)", wanted).group(1))  # type: ignore[union-attr]
                    extra = f"Transport: {wanted}\r\nSession: {session}\r\n"
                elif method in (b"RECORD", b"TEARDOWN"):
                    extra = f"Session: {session}\r\n"
                else:
                    await self._reply(writer, cseq, "501 Not Implemented", "")
                    continue
                await self._reply(writer, cseq, "200 OK", extra)
                if method == b"TEARDOWN":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # the top of a connection's task: asyncio's start_server logs a cancelled one as an
            # error, so a sink being shut down just ends it
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, cseq: re.Match[bytes] | None, status: str, extra: str) -> None:
        number = cseq.group(1).decode() if cseq else "0"
        writer.write(f"RTSP/1.0 {status}\r\nCSeq: {number}\r\n{extra}\r\n".encode())
        await writer.drain()

"""An RTSP ingest peer standing in for MediaMTX in tests: FFmpeg listening for one publisher.

Where no MediaMTX binary is present, tests publish to an FFmpeg RTSP listener
(``-rtsp_flags listen``) that decodes what it receives to raw frames on stdout - numpy arrays
with arrival times - and can also keep the H.264 elementary stream it received, so format
checks decode the real bytes instead of trusting flags. Publishers reach it through
:class:`~tests.support.rtsp_gate.RtspGate`, which authenticates them as MediaMTX does (with
the auth hook at ``hook_url``; without one, anyone may publish, as with MediaMTX's defaults).

One FFmpeg listener takes one publisher; with ``reconnect`` a fresh listener is started on
the same port whenever the previous one ends, so publishers that restart can come back.
Only 127.0.0.1 is used.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from urllib.parse import urlsplit

import numpy as np

from tests.support.rtsp_gate import RtspGate
from tests.support.services import eventually

_INPUT_LINE = re.compile(rb"^Input #0, rtsp")
_SHOWINFO = re.compile(rb"\bn:\s*(\d+).*?\biskey:(\d).*?\btype:([IPBS?])")
_SHOWINFO_FMT = re.compile(rb"\bfmt:(\w+)")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that were free a moment ago (held open together
    while chosen, so no two are the same)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(n)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]


def is_listening(port: int) -> bool:
    """Whether some socket listens on TCP ``port`` (read from /proc, so no connection is made:
    an FFmpeg listener would take a test connection for its publisher)."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as rows:
            for row in rows:
                fields = row.split()
                if len(fields) > 3 and fields[1].endswith(wanted) and fields[3] == "0A":
                    return True
    return False


def default_ffmpeg() -> str:
    exe = os.environ.get("FRAMECAST_FFMPEG")
    if exe:
        return exe
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    index: int
    """Position among all frames this receiver decoded, from 0."""
    connection: int
    """Which publisher connection it came from, from 1."""
    arrived: float
    """time.monotonic() when its last byte was read."""
    image: np.ndarray


class ReceiverError(Exception):
    """The listener could not run: ``detail`` is FFmpeg's last output."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"RTSP receiver failed: {detail}")
        self.detail = detail


class RtspReceiver:
    """``async with RtspReceiver(width=320, height=240) as rx:`` then publish to ``rx.url``."""

    def __init__(
        self,
        *,
        width: int,
        height: int,
        path: str = "live",
        port: int | None = None,
        pix_fmt: str = "gray",
        record_dir: Path | None = None,
        reconnect: bool = True,
        nobuffer: bool = False,
        listen_timeout_s: int = 60,
        keep: int = 300,
        ffmpeg: str | None = None,
        hook_url: str | None = None,
    ) -> None:
        """``pix_fmt`` is what frames are decoded to (gray or bgr24); ``record_dir`` keeps
        each connection's H.264 as ``connection-N.h264``; ``nobuffer`` lowers the delay but
        loses every frame up to the second keyframe; ``keep`` bounds the frames kept."""
        if pix_fmt not in ("gray", "bgr24"):
            raise ValueError("pix_fmt must be gray or bgr24")
        self.width = width
        self.height = height
        self.path = path
        self.port = port or free_port()
        self.gate = RtspGate(self.port, free_port(), hook_url=hook_url)
        self.pix_fmt = pix_fmt
        self.record_dir = record_dir
        self.reconnect = reconnect
        self.nobuffer = nobuffer
        self.listen_timeout_s = listen_timeout_s
        self.ffmpeg = ffmpeg or default_ffmpeg()
        self.frames: collections.deque[ReceivedFrame] = collections.deque(maxlen=keep)
        self.received = 0
        self.connections = 0
        self.recordings: list[Path] = []
        self.log: collections.deque[str] = collections.deque(maxlen=200)
        self._shape = (height, width) if pix_fmt == "gray" else (height, width, 3)
        self._frame_size = width * height * (1 if pix_fmt == "gray" else 3)
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._error: ReceiverError | None = None
        self._ready = asyncio.Event()

    @property
    def url(self) -> str:
        """Where a publisher sends the stream (the gate in front of the listener)."""
        return f"rtsp://127.0.0.1:{self.port}/{self.path}"

    @property
    def _listener_url(self) -> str:
        return f"rtsp://127.0.0.1:{self.gate.upstream_port}/{self.path}"

    @property
    def listening(self) -> bool:
        return self._task is not None and not self._task.done()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start listening (again, after :meth:`stop`) on the same port."""
        if self.listening:
            return
        self._stopping = False
        self._error = None
        await self.gate.__aenter__()
        started = asyncio.Event()
        self._task = asyncio.create_task(self._serve(started), name=f"rtsp-receiver:{self.port}")
        await started.wait()

    async def stop(self) -> None:
        """Stop listening; the current publisher, if any, loses its connection."""
        self._stopping = True
        proc = self._proc
        if proc is not None and proc.returncode is None:
            # SIGTERM lets FFmpeg finish the recording it is writing; SIGKILL if it hangs
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGKILL)
        if self._task is not None:
            await self._task
            self._task = None
        await self.gate.__aexit__()

    async def wait_listening(self, timeout: float = 10.0) -> None:
        """Until a listener waits for the next publisher - what MediaMTX always does; a
        publisher that restarts faster than the listener respawns would be refused."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"receiver: not listening within {timeout:g} s; FFmpeg said: {list(self.log)[-5:]}"
            ) from None

    async def wait_connected(self, count: int = 1, timeout: float = 10.0) -> None:
        """Until ``count`` publishers in all have connected."""
        await self._wait(lambda: self.connections >= count, timeout, f"{count} connection(s)")

    async def wait_frames(self, n: int, timeout: float = 10.0) -> list[ReceivedFrame]:
        """Until ``n`` frames in all have been decoded; the frames still kept."""
        await self._wait(lambda: self.received >= n, timeout, f"{n} frames (got {self.received})")
        return list(self.frames)

    async def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: predicate() or self._error is not None),
                    timeout,
                )
            except TimeoutError:
                raise TimeoutError(
                    f"receiver: no {what} within {timeout:g} s; FFmpeg said: {list(self.log)[-5:]}"
                ) from None
        if self._error is not None and not predicate():
            raise self._error

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ----- listener processes -----------------------------------------------------------

    def _command(self, recording: Path | None) -> list[str]:
        command = [
            self.ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info",
            "-rtsp_flags", "listen", "-listen_timeout", str(self.listen_timeout_s),
            "-flags", "low_delay", "-threads", "1",
        ]
        if self.nobuffer:
            command += ["-fflags", "nobuffer"]
        command += [
            "-i", self._listener_url,
            "-map", "0:v:0", "-fps_mode", "passthrough", "-threads", "1",
            "-f", "rawvideo", "-pix_fmt", self.pix_fmt, "pipe:1",
        ]
        if recording is not None:
            command += ["-map", "0:v:0", "-c", "copy", "-f", "h264", "-y", str(recording)]
        return command

    async def _serve(self, started: asyncio.Event) -> None:
        quick_failures = 0
        while not self._stopping:
            number = self.connections + 1
            recording = None
            if self.record_dir is not None:
                recording = self.record_dir / f"connection-{number}.h264"
            began = time.monotonic()
            proc = self._proc = await asyncio.create_subprocess_exec(
                *self._command(recording),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            if self._stopping:  # stop() ran while this listener was being spawned
                proc.kill()
            connected = asyncio.Event()
            readers = asyncio.gather(
                self._read_log(proc, connected, recording), self._read_frames(proc, number)
            )
            if await self._until_listening(proc):
                self._ready.set()
            started.set()
            await readers
            await proc.wait()
            self._ready.clear()
            if not connected.is_set() and time.monotonic() - began < 1.0 and not self._stopping:
                quick_failures += 1
                if quick_failures >= 3:
                    self._error = ReceiverError(" | ".join(list(self.log)[-5:]))
                    await self._notify()
                    return
            else:
                quick_failures = 0
            if not self.reconnect:
                break
        started.set()

    async def _until_listening(self, proc: asyncio.subprocess.Process) -> bool:
        # polling /proc: nothing to wait on for a bind
        with contextlib.suppress(AssertionError):
            await eventually(lambda: proc.returncode is not None or is_listening(self.gate.upstream_port),
                             "FFmpeg listening", 10.0)
        return proc.returncode is None and is_listening(self.gate.upstream_port)

    async def _read_log(
        self, proc: asyncio.subprocess.Process, connected: asyncio.Event, recording: Path | None
    ) -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            self.log.append(line.decode(errors="replace").rstrip())
            if not connected.is_set() and _INPUT_LINE.match(line):
                connected.set()
                self._ready.clear()
                self.connections += 1
                if recording is not None:
                    self.recordings.append(recording)
                await self._notify()

    async def _read_frames(self, proc: asyncio.subprocess.Process, connection: int) -> None:
        assert proc.stdout is not None
        while True:
            try:
                data = await proc.stdout.readexactly(self._frame_size)
            except asyncio.IncompleteReadError:
                return
            image = np.frombuffer(data, np.uint8).reshape(self._shape)
            self.frames.append(ReceivedFrame(self.received, connection, time.monotonic(), image))
            self.received += 1
            await self._notify()


class RtspPaths:
    """One RTSP address in front of several receivers, each taking the publisher of its own path,
    as MediaMTX serves every path on one port: ``async with RtspPaths([rx1, rx2]) as ingest:``,
    then publish to ``ingest.url/<path>``. A connection goes, bytes untouched, to the receiver
    (its gate) named by the path of its first request."""

    def __init__(self, receivers: list[RtspReceiver]) -> None:
        self.receivers = {rx.path: rx for rx in receivers}
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._route, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)

    async def _route(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            first = await reader.readline()  # e.g. OPTIONS rtsp://127.0.0.1:port/cam1?token=... RTSP/1.0
            words = first.split()
            path = urlsplit(words[1].decode(errors="replace")).path.strip("/") if len(words) == 3 else ""
            receiver = self.receivers.get(path)
            if receiver is None:
                return
            upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", receiver.port)
            upstream.write(first)
            await asyncio.gather(_pipe(reader, upstream), _pipe(upstream_reader, writer))
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()
            self._connections.discard(task)


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await source.read(1 << 16):
            sink.write(data)
            await sink.drain()
    with contextlib.suppress(OSError):
        sink.close()


# ----- checking what was received --------------------------------------------------------


def h264_profiles(stream: bytes) -> list[int]:
    """profile_idc of every SPS in an Annex B H.264 stream (66 baseline, 77 main, 100 high...)."""
    profiles = []
    start = stream.find(b"\x00\x00\x01")
    while start != -1 and start + 4 < len(stream):
        nal_header = stream[start + 3]
        if nal_header & 0x1F == 7:
            profiles.append(stream[start + 4])
        start = stream.find(b"\x00\x00\x01", start + 3)
    return profiles


@dataclass(frozen=True, slots=True)
class DecodedFrame:
    n: int
    key: bool
    type: str
    """I, P or B, as the decoder saw it."""
    pix_fmt: str


async def decode_frames(path: Path, ffmpeg: str | None = None) -> list[DecodedFrame]:
    """Decode an H.264 file with showinfo: frame types, keyframes and pixel format, in order."""
    proc = await asyncio.create_subprocess_exec(
        ffmpeg or default_ffmpeg(), "-hide_banner", "-nostdin", "-i", str(path),
        "-vf", "showinfo", "-f", "null", "-",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    frames = []
    for line in err.splitlines():
        if b"Parsed_showinfo" not in line:
            continue
        match = _SHOWINFO.search(line)
        if match is None:
            continue
        fmt = _SHOWINFO_FMT.search(line)
        frames.append(
            DecodedFrame(
                n=int(match.group(1)),
                key=match.group(2) == b"1",
                type=match.group(3).decode(),
                pix_fmt=fmt.group(1).decode() if fmt else "",
            )
        )
    return frames

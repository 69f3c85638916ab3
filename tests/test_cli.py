"""The command line as a user meets it: framecast stream, capture stdin, bad configuration."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from framecast.capture.service import lifespan as capture_lifespan
from framecast.capture.settings import CaptureSettings
from framecast.devstack.nats import NatsServer
from framecast.encoder.service import lifespan as encoder_lifespan
from framecast.encoder.settings import EncoderSettings
from framecast.frames.pattern import TestPattern
from framecast.proto.bus import Bus
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from tests.support.rtsp import RtspReceiver, free_port
from tests.support.services import running, wait_for_state

S = StreamState


async def _framecast(*args: str, env: dict[str, str], stdin: bytes | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import sys; from framecast.runtime.cli import main; sys.exit(main())", *args,
        env=env, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_stream_start_follows_the_stream_to_publishing(nats_server: NatsServer, stream_id: str) -> None:
    env = dict(os.environ, FRAMECAST_NATS_URL=nats_server.url)
    async with RtspReceiver(width=320, height=240, path=stream_id) as rx:
        encoder = EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{rx.port}",
                                  publish_auth="none")
        async with (running("encoder", encoder, encoder_lifespan),
                    running("capture", CaptureSettings(nats_url=nats_server.url), capture_lifespan)):
            code, out, err = await _framecast("stream", "start", stream_id, "--source", "testpattern",
                                              "--size", "320x240", env=env)
            assert code == 0, err
            assert err == "", "nothing on stderr when all went well (no traceback at exit)"
            assert f"{stream_id}: requested" in out and f"{stream_id}: publishing" in out
            code, out, _ = await _framecast("stream", "list", env=env)
            assert stream_id in out and "publishing" in out
            code, out, err = await _framecast("stream", "start", stream_id, env=env)
            assert code == 1 and "already publishing" in err
            code, out, err = await _framecast("stream", "stop", stream_id, env=env)
            assert code == 0, err
            assert err == ""
            assert out.count(f"{stream_id}: stopping") == 1 and f"{stream_id}: stopped" in out, out


async def test_stream_start_says_once_why_it_is_not_publishing(nats_server: NatsServer, stream_id: str) -> None:
    env = dict(os.environ, FRAMECAST_NATS_URL=nats_server.url)
    nobody = free_port()  # no MediaMTX listens there
    encoder = EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{nobody}",
                              publish_auth="none")
    async with (running("encoder", encoder, encoder_lifespan),
                running("capture", CaptureSettings(nats_url=nats_server.url), capture_lifespan)):
        code, out, err = await _framecast("stream", "start", stream_id, "--size", "320x240", "--timeout", "4",
                                          env=env)
        assert code == 1
        assert out.count("MediaMTX is not reachable") == 1, out  # retried, said once
        assert f"{stream_id} is not live or publishing after 4 s (it is stalled: MediaMTX is not reachable" in err
        assert f"framecast stream watch {stream_id}" in err
        code, out, err = await _framecast("stream", "stop", stream_id, env=env)
        assert code == 0 and f"{stream_id}: stopped" in out, (out, err)


async def test_a_bad_stream_id_is_refused_before_anything_is_sent() -> None:
    env = dict(os.environ, FRAMECAST_NATS_URL="nats://127.0.0.1:1")  # never reached
    code, _, err = await _framecast("stream", "start", "bad id!", env=env)
    assert code == 2
    assert "'bad id!' is not a stream id: use 1 to 64 letters, digits, '_' or '-'" in err


async def test_stream_commands_without_nats_say_what_to_do() -> None:
    env = dict(os.environ, FRAMECAST_NATS_URL="nats://operator:s3cretpw@127.0.0.1:1")
    code, _, err = await _framecast("stream", "list", env=env)
    assert code == 1
    assert "cannot reach NATS at nats://operator:***@127.0.0.1:1" in err and "Traceback" not in err
    assert "s3cretpw" not in err


async def test_a_nats_url_that_is_no_url_is_a_bad_setting_not_a_traceback() -> None:
    env = dict(os.environ, FRAMECAST_NATS_URL="nats://127.0.0.1:99999")
    code, _, err = await _framecast("stream", "list", env=env)
    assert code == 2 and "FRAMECAST_NATS_URL" in err and "is not a NATS URL" in err
    assert "Traceback" not in err and err.count("\n") == 1


async def test_stream_start_without_capture_names_the_missing_service(nats_server: NatsServer, stream_id: str) -> None:
    code, _, err = await _framecast("stream", "start", stream_id, env=dict(os.environ, FRAMECAST_NATS_URL=nats_server.url))
    assert code == 1 and "no capture service is answering" in err


async def test_capture_stdin_publishes_piped_frames(nats_server: NatsServer, bus: Bus, stream_id: str) -> None:
    store = await StateStore.open(bus, "test")
    pattern = TestPattern(320, 240)
    data = b"".join(pattern.render(n, 1_700_000_000_000).tobytes() for n in range(1, 31))
    async with RtspReceiver(width=320, height=240, path=stream_id) as rx:
        encoder = EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{rx.port}",
                                  publish_auth="none")
        async with running("encoder", encoder, encoder_lifespan):
            code, _, err = await _framecast("capture", "stdin", "--stream", stream_id, "--size", "320x240",
                                            env=dict(os.environ, FRAMECAST_NATS_URL=nats_server.url), stdin=data)
            assert code == 0, err
            frames = await rx.wait_frames(5, timeout=10)
            assert all(np.asarray(f.image).shape == (240, 320) for f in frames)
    record = await wait_for_state(store, stream_id, S.STOPPED)
    assert record.reason == "source ended"


async def test_capture_stdin_short_final_frame_is_an_error(nats_server: NatsServer, bus: Bus, stream_id: str) -> None:
    """Even while an encoder publishes the stream: a cut frame fails it, never a clean stop."""
    store = await StateStore.open(bus, "test")
    data = bytes(320 * 240 * 3 * 30 + 1000)
    async with RtspReceiver(width=320, height=240, path=stream_id) as rx:
        encoder = EncoderSettings(nats_url=nats_server.url, mediamtx_rtsp=f"rtsp://127.0.0.1:{rx.port}",
                                  publish_auth="none")
        async with running("encoder", encoder, encoder_lifespan):
            code, _, err = await _framecast("capture", "stdin", "--stream", stream_id, "--size", "320x240",
                                            env=dict(os.environ, FRAMECAST_NATS_URL=nats_server.url), stdin=data)
    assert code == 1
    assert "stdin ended in the middle of frame 31: got 1000 of 230400 bytes" in err
    assert "Traceback" not in err
    record = await wait_for_state(store, stream_id, S.FAILED)
    assert "middle of frame 31" in record.reason


def test_a_bad_variable_stops_a_service_with_one_line() -> None:
    env = dict(os.environ, FRAMECAST_NATS_URL="not a url", FRAMECAST_MAX_STREAMS="lots")
    result = subprocess.run([sys.executable, "-m", "framecast.encoder"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("framecast encoder: FRAMECAST_")


def test_a_key_store_that_cannot_be_written_stops_auth_with_one_line(tmp_path: Path) -> None:
    occupied = tmp_path / "keys"
    occupied.write_text("a file where the key directory should be")
    env = dict(os.environ, FRAMECAST_AUTH_KEY_DIR=str(occupied), FRAMECAST_NATS_URL="nats://127.0.0.1:9",
               FRAMECAST_LOG_LEVEL="error")
    result = subprocess.run([sys.executable, "-m", "framecast.auth"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == f"framecast auth: {occupied}: cannot create the key directory: File exists"
    assert occupied.read_text() == "a file where the key directory should be"  # nothing overwritten


@pytest.mark.parametrize("service", ["auth", "capture", "encoder", "gateway"])
def test_python_m_service_help_prints_help_and_starts_nothing(service: str, tmp_path: Path) -> None:
    """``python -m framecast.<service> --help`` is ``framecast <service> --help``: no keys, no service."""
    env = dict(os.environ, FRAMECAST_AUTH_KEY_DIR=str(tmp_path / "keys"), FRAMECAST_NATS_URL="nats://127.0.0.1:9")
    result = subprocess.run([sys.executable, "-m", f"framecast.{service}", "--help"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: framecast {service}")
    assert not (tmp_path / "keys").exists()


@pytest.mark.parametrize("value", ["60", "-1", "weekly"])
def test_a_rotation_period_auth_cannot_honour_stops_it_with_one_line(value: str, tmp_path: Path) -> None:
    env = dict(os.environ, FRAMECAST_AUTH_KEY_DIR=str(tmp_path / "keys"), FRAMECAST_NATS_URL="nats://127.0.0.1:9",
               FRAMECAST_AUTH_ROTATE_EVERY_S=value)
    result = subprocess.run([sys.executable, "-m", "framecast.auth"], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("framecast auth: FRAMECAST_AUTH_ROTATE_EVERY_S")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "keys").exists(), "nothing is created before the settings are read"

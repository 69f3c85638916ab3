"""Supervising FFmpeg against a real RTSP receiver: restarts, backoff, giving up, stopping."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from framecast.encoder.supervisor import SupervisorPolicy, server_unreachable
from framecast.proto.messages import VideoFormat
from tests.support.rtsp import RtspReceiver, free_port
from tests.support.services import eventually

TOKEN = "s3cr3t-T0KEN"


async def test_restarts_after_ffmpeg_is_killed(  # type: ignore[no-untyped-def]
    stream, producer, receiver: RtspReceiver, token_url, counter, gone
) -> None:
    producer()
    urls = token_url(receiver.url, ready=receiver.wait_listening)
    supervisor, pump, events = await stream(urls)
    await events.wait_for("publishing")
    await receiver.wait_frames(10)
    first = supervisor.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)

    restarting = await events.wait_for("restarting")
    assert "killed by SIGKILL" in restarting.reason
    await events.wait_for("publishing", count=2)
    await receiver.wait_connected(2)
    seen = receiver.received
    frames = await receiver.wait_frames(seen + 20)
    assert {f.connection for f in frames[-20:]} == {2}
    numbers = [counter.read(f.image) for f in frames[-20:]]
    assert numbers == sorted(numbers)
    assert supervisor.pid not in (None, first)
    assert supervisor.restarts == 1
    assert urls.calls == 2  # a fresh URL (token) for every start
    assert pump.write_errors <= 1  # the write that met the dead pipe, if one was under way
    await eventually(lambda: gone(first), "killed FFmpeg reaped", 5)


async def test_backs_off_while_the_server_is_down_then_recovers(  # type: ignore[no-untyped-def]
    stream, producer, fmt: VideoFormat, token_url, monkeypatch
) -> None:
    # full jitter draws uniform(0, ceiling): take the ceiling, to see it double up to the cap
    monkeypatch.setattr("framecast.encoder.supervisor.random.uniform", lambda low, high: high)
    rx = RtspReceiver(width=fmt.width, height=fmt.height, path="cam1")  # not listening yet
    producer()
    policy = SupervisorPolicy(backoff_base_s=0.05, backoff_cap_s=0.2, healthy_after_s=0.5)
    supervisor, _, events = await stream(token_url(rx.url), policy=policy)
    for n, ceiling in enumerate((0.05, 0.1, 0.2, 0.2), start=1):
        restarting = await events.wait_for("restarting", count=n)
        assert "Connection refused" in restarting.reason
        assert restarting.backoff_s == ceiling
    async with rx:
        await events.wait_for("publishing")
        await rx.wait_frames(60)  # two seconds of video: longer than healthy_after_s
        os.kill(supervisor.pid, signal.SIGKILL)
        restarting = await events.wait_for("restarting", count=5)
        assert restarting.backoff_s == 0.05  # the healthy run reset the backoff
        await events.wait_for("publishing", count=2)
    assert not events.of("failed")


async def test_an_unreachable_server_never_uses_up_the_restart_budget(  # type: ignore[no-untyped-def]
    stream, producer, fmt: VideoFormat, token_url
) -> None:
    rx = RtspReceiver(width=fmt.width, height=fmt.height, path="cam1")  # not listening yet
    producer()
    policy = SupervisorPolicy(backoff_base_s=0.01, backoff_cap_s=0.05, max_restarts=2, window_s=60)
    _, _, events = await stream(token_url(rx.url), policy=policy)
    await events.wait_for("restarting", count=8)  # four times the budget: MediaMTX is restarting
    assert not events.of("failed")
    async with rx:
        await events.wait_for("publishing")
        await rx.wait_frames(10)
    assert not events.of("failed")


def test_only_unreachable_servers_are_retried_without_limit() -> None:
    unreachable = [
        "FFmpeg exited with code 145: Connection to tcp://127.0.0.1:8554?timeout=0 failed: Connection refused",
        "FFmpeg exited with code 145: Connection to tcp://10.0.0.9:8554 failed: Connection timed out",
        "FFmpeg exited with code 1: Connection to tcp://mediamtx:8554 failed: No route to host",
        "no publish URL: NoResponders: no auth service is answering on framecast.auth.token.issue",
        "no publish URL: RequestTimedOut: the auth service did not answer within 2 s",
    ]
    counted = [
        "FFmpeg exited with code 1: Error opening output rtsp://***@127.0.0.1/cam1: Server returned 401 Unauthorized",
        "FFmpeg killed by SIGKILL",
        "not publishing 15 s after start",
        "no progress for 5 s (frame 812)",
        "no publish URL: RequestRejected: the auth service refused: not allowed",
    ]
    assert all(server_unreachable(reason) for reason in unreachable)
    assert not any(server_unreachable(reason) for reason in counted)


async def test_a_failing_url_factory_is_a_failed_start(  # type: ignore[no-untyped-def]
    stream, producer, receiver: RtspReceiver
) -> None:
    calls = 0

    async def urls(_why: str) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError(f"auth service down for rtsp://pub:{TOKEN}@127.0.0.1/cam1")
        return receiver.url

    producer()
    _, _, events = await stream(urls)
    restarting = await events.wait_for("restarting")
    assert "no publish URL: RuntimeError: auth service down" in restarting.reason
    assert TOKEN not in restarting.reason
    await events.wait_for("publishing")


async def test_gives_up_after_too_many_restarts(  # type: ignore[no-untyped-def]
    stream, producer, token_url, fake_ffmpeg: str, monkeypatch
) -> None:
    monkeypatch.setenv("FAKE_FFMPEG_ECHO_URL", "1")
    url = f"rtsp://publisher:{TOKEN}@127.0.0.1:{free_port()}/cam1"
    producer()
    policy = SupervisorPolicy(backoff_base_s=0.01, backoff_cap_s=0.05, max_restarts=3, window_s=60)
    supervisor, _, events = await stream(token_url(url), policy=policy, ffmpeg=fake_ffmpeg)
    failed = await events.wait_for("failed", timeout=20)
    assert supervisor.final == failed
    assert len(events.of("restarting")) == 3
    assert "gave up after 4 failures within 60 s" in failed.reason
    assert "Error opening output rtsp://***@127.0.0.1" in failed.reason
    assert "token=***" in failed.reason
    for event in events.items:
        assert TOKEN not in event.reason
    assert supervisor.stderr_tail() and all(TOKEN not in line for line in supervisor.stderr_tail())
    assert supervisor.pid is None
    await supervisor.stop()  # after giving up, stop is a no-op
    assert events.kinds()[-1] == "failed"


async def test_stalled_ffmpeg_is_replaced(  # type: ignore[no-untyped-def]
    stream, producer, receiver: RtspReceiver, token_url, gone
) -> None:
    producer()
    supervisor, _, events = await stream(token_url(receiver.url))
    await events.wait_for("publishing")
    frozen = supervisor.pid
    assert frozen is not None
    os.kill(frozen, signal.SIGSTOP)  # alive, but makes no progress
    stalled = await events.wait_for("stalled", timeout=10)
    assert "no progress for 2 s" in stalled.reason and stalled.pid == frozen
    await events.wait_for("publishing", count=2, timeout=15)
    await eventually(lambda: gone(frozen), "stalled FFmpeg killed", 5)


async def test_stop_leaves_no_process_behind(  # type: ignore[no-untyped-def]
    stream, producer, receiver: RtspReceiver, token_url, gone
) -> None:
    producer()
    supervisor, pump, events = await stream(token_url(receiver.url))
    await events.wait_for("publishing")
    pid = supervisor.pid
    assert pid is not None
    started = time.monotonic()
    await supervisor.stop()
    assert time.monotonic() - started < 2.0  # EOF on stdin was enough, no SIGTERM needed
    assert events.kinds()[-1] == "stopped" and events.of("stopped")[0].reason == "stop requested"
    assert gone(pid)  # reaped: no zombie, no orphan
    await supervisor.stop()  # idempotent
    await pump.stop()
    await pump.stop()
    assert len(events.of("stopped")) == 1
    assert supervisor.pid is None and not supervisor.publishing


async def test_stop_kills_an_ffmpeg_that_ignores_eof(  # type: ignore[no-untyped-def]
    stream, producer, receiver: RtspReceiver, token_url, gone
) -> None:
    producer()
    policy = SupervisorPolicy(stop_grace_s=0.3, term_grace_s=0.3, stall_timeout_s=30)
    supervisor, _, events = await stream(token_url(receiver.url), policy=policy)
    await events.wait_for("publishing")
    pid = supervisor.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # neither EOF nor SIGTERM is acted on: only SIGKILL works
    await supervisor.stop()
    assert gone(pid)
    assert events.kinds()[-1] == "stopped"


async def test_hardware_encoder_failing_at_run_time_falls_back_to_libx264(  # type: ignore[no-untyped-def]
    stream, producer, receiver: RtspReceiver, token_url, fake_ffmpeg: str
) -> None:
    producer()
    supervisor, _, events = await stream(
        token_url(receiver.url), encoder="h264_nvenc", ffmpeg=fake_ffmpeg
    )
    fallback = await events.wait_for("encoder_fallback")
    assert fallback.encoder == "libx264"
    assert "h264_nvenc failed at run time" in fallback.reason
    assert "OpenEncodeSessionEx failed" in fallback.reason
    restarting = await events.wait_for("restarting")
    assert restarting.backoff_s == 0
    publishing = await events.wait_for("publishing")
    assert publishing.encoder == supervisor.encoder == "libx264"
    await receiver.wait_frames(10)


async def test_paused_producer_keeps_the_publish_up_in_real_time(  # type: ignore[no-untyped-def]
    stream, producer, receiver: RtspReceiver, token_url
) -> None:
    source = producer()
    supervisor, pump, events = await stream(token_url(receiver.url), heartbeat_s=0.5)
    await events.wait_for("publishing")
    await receiver.wait_frames(15)
    source.pause()
    paused_at = time.monotonic()
    video_at = supervisor.progress.out_time_us
    repeated = pump.repeated
    # longer than the stall timeout (2 s): heartbeats must keep FFmpeg making progress
    seen = receiver.received
    await receiver.wait_frames(seen + 75, timeout=10)
    elapsed = time.monotonic() - paused_at
    assert pump.repeated - repeated >= 4
    assert not events.of("stalled") and not events.of("restarting")
    # video time follows wall time: duplicates fill the pause at the announced fps
    video_s = (supervisor.progress.out_time_us - video_at) / 1e6
    assert abs(video_s - elapsed) < 1.0, (video_s, elapsed)
    source.resume()
    await receiver.wait_frames(receiver.received + 15)


CHILD = """
import asyncio, os, sys, threading
from framecast.encoder.supervisor import Supervisor
from framecast.proto.messages import VideoFormat

FMT = VideoFormat(width=320, height=240, fps=30)

async def main():
    async def url(_why):
        return sys.argv[2]
    async def on_event(event):
        if event.kind == "starting":
            print(event.pid, flush=True)
    def on_process(fd):
        # one frame, so FFmpeg opens its encoder and connects (to a server that never answers)
        if fd is not None:
            threading.Thread(target=os.write, args=(fd, bytes(FMT.frame_size)), daemon=True).start()
    Supervisor(
        ffmpeg=sys.argv[1], encoder="libx264", fmt=FMT, url_factory=url,
        on_event=on_event, on_process=on_process,
    ).start()
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_ffmpeg_dies_with_a_killed_parent(  # type: ignore[no-untyped-def]
    ffmpeg_exe: str, tmp_path: Path, gone
) -> None:
    # A server that accepts and never answers: FFmpeg blocks in its RTSP handshake, where
    # neither EOF on stdin nor anything else would end it - only PR_SET_PDEATHSIG.
    connected = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        connected.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = await asyncio.create_subprocess_exec(
        sys.executable, str(script), ffmpeg_exe, f"rtsp://127.0.0.1:{port}/cam1",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        ffmpeg_pid = int(await asyncio.wait_for(child.stdout.readline(), 20))
        await asyncio.wait_for(connected.wait(), 10)
        assert not gone(ffmpeg_pid)
        child.kill()
        await child.wait()
        await eventually(lambda: gone(ffmpeg_pid), "FFmpeg of a SIGKILLed parent", 5)
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()

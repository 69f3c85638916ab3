"""What reaches the RTSP server: the frames themselves, and a browser-safe H.264 format."""

from __future__ import annotations

import itertools
from pathlib import Path

from framecast.encoder.profiles import default_gop
from framecast.proto.messages import VideoFormat
from tests.support.rtsp import RtspReceiver, decode_frames, h264_profiles


async def test_publishes_increasing_counters_in_a_browser_safe_format(  # type: ignore[no-untyped-def]
    stream, producer, receiver: RtspReceiver, counter, token_url, fmt: VideoFormat
) -> None:
    producer()
    supervisor, _, events = await stream(token_url(receiver.url))
    publishing = await events.wait_for("publishing")
    assert publishing.encoder == "libx264" and publishing.pid == supervisor.pid
    frames = await receiver.wait_frames(75, timeout=10)
    numbers = [counter.read(f.image) for f in frames]
    assert numbers == sorted(numbers), numbers
    assert numbers[-1] - numbers[0] >= 40
    assert supervisor.progress.frame > 0 and supervisor.restarts == 0
    await supervisor.stop()
    assert events.kinds()[-1] == "stopped"
    await receiver.stop()  # the recording is complete once the listener has exited

    recording: Path = receiver.recordings[0]
    stream_bytes = recording.read_bytes()
    profiles = set(h264_profiles(stream_bytes))
    assert profiles == {66}, profiles  # constrained baseline; never 244 (High 4:4:4)
    decoded = await decode_frames(recording)
    assert len(decoded) >= 75
    assert {f.pix_fmt for f in decoded} == {"yuv420p"}
    assert "B" not in {f.type for f in decoded}
    assert decoded[0].key
    keys = [f.n for f in decoded if f.key]
    assert len(keys) >= 3
    assert {b - a for a, b in itertools.pairwise(keys)} == {default_gop(fmt)}, keys  # a third of a second
    # SPS/PPS in band before every keyframe, not only in the SDP
    assert len(h264_profiles(stream_bytes)) >= len(keys)

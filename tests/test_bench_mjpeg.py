"""The MJPEG baseline the mjpeg benchmark compares framecast with serves what it claims.

bench.mjpeg_server stands for the endpoint framecast replaces; if it sent something else
(no stamp, another picture, a login page) the comparison's figures would mean nothing.
No timing is asserted.
"""

from __future__ import annotations

import httpx
import numpy as np
import pytest

pytest.importorskip("simplejpeg")

from bench.mjpeg import MjpegServer, jpeg_psnr, matching_quality, psnr  # noqa: E402
from framecast.frames.pattern import TestPattern, read_stamp  # noqa: E402


async def test_mjpeg_server_sends_stamped_pattern_frames_to_anyone() -> None:
    import simplejpeg

    async with MjpegServer((640, 360), 80) as server, httpx.AsyncClient(timeout=10) as http:
        async with http.stream("GET", f"{server.url}/mjpeg") as reply:  # no credentials
            assert reply.status_code == 200
            assert reply.headers["content-type"].startswith("multipart/x-mixed-replace")
            body = b""
            async for chunk in reply.aiter_bytes():
                body += chunk
                if body.count(b"\xff\xd9") >= 2:  # two whole JPEGs
                    break
        start = body.index(b"\xff\xd8")
        image = simplejpeg.decode_jpeg(body[start:body.index(b"\xff\xd9", start) + 2], colorspace="BGR")
        stamp = read_stamp(image)
        assert stamp is not None
        sent = TestPattern(640, 360).render(stamp.frame_no, stamp.ms)
        assert psnr(image, sent) > 30
        assert (await http.get(f"{server.url}/pattern.js")).text.count("export function decodeStamp") == 1


def test_matching_quality_reaches_the_target_and_no_lower_quality_does() -> None:
    quality = matching_quality((640, 360), 38.0)
    assert jpeg_psnr((640, 360), quality)[0] >= 38.0 > jpeg_psnr((640, 360), quality - 1)[0]
    assert psnr(np.zeros((2, 2)), np.zeros((2, 2))) == float("inf")

"""``python -m bench.mjpeg_server WIDTH HEIGHT QUALITY``: the MJPEG endpoint framecast replaces, as a baseline.

Why: the spike report's starting point was ``/api/video/mjpeg/{stream_id}`` fed by a CV worker.
This is that endpoint written the way such endpoints usually are, and no worse: framecast's
test pattern rendered at 30 fps in the process (the CV worker's frames), each frame
JPEG-encoded once with libjpeg-turbo (simplejpeg, 4:2:0) and the same bytes written to every
viewer as one part of a ``multipart/x-mixed-replace`` HTTP response. A viewer whose socket
buffer already holds two frames skips the new one (latest frame wins), as a queue of one would.
No credentials are asked for: that is how such endpoints usually are, and what is measured.

It runs as its own process so its CPU is its own. The CPU of rendering (the worker's part,
framecast's capture) and of encoding (framecast's encoder) is counted apart, by thread time
around each call, so the serving cost can be compared with MediaMTX's. Routes: ``/mjpeg``
the stream, ``/`` a page showing it in an ``<img>`` and reading each painted frame's stamp with
the player's own decoder (``/pattern.js``, the gateway's file), ``/stats`` the counters as JSON.
The first stdout line is ``{"port": N}`` once it listens; closing stdin stops it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import time
from pathlib import Path

import simplejpeg

from framecast.frames.pattern import TestPattern

FPS = 30
BOUNDARY = b"framecastmjpeg"
BACKLOG_FRAMES = 2
PATTERN_JS = Path(importlib.util.find_spec("framecast.gateway").origin or "").parent / "static" / "pattern.js"

PAGE = b"""<!doctype html><html><body style="margin:0;background:#000">
<img id="img" src="/mjpeg" style="display:block">
<script type="module">
import { decodeStamp } from "/pattern.js";
const img = document.getElementById("img");
const canvas = document.createElement("canvas");
const context = canvas.getContext("2d", { willReadFrequently: true });
window.mjpegSamples = [];
let last = -1;
function paint() {
  if (img.naturalWidth > 0) {
    // what the page shows now: the stamp read from the pixels at this animation frame
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    context.drawImage(img, 0, 0);
    const stamp = decodeStamp(context.getImageData(0, 0, canvas.width, canvas.height / 4 | 0));
    if (stamp && stamp.frameNo !== last) {
      last = stamp.frameNo;
      window.mjpegSamples.push(Date.now() - stamp.ms);
    }
  }
  requestAnimationFrame(paint);
}
requestAnimationFrame(paint);
</script></body></html>"""


class Server:
    """One stream, rendered, encoded once per frame and fanned out to every ``/mjpeg`` viewer."""

    def __init__(self, width: int, height: int, quality: int) -> None:
        self.pattern = TestPattern(width, height)
        self.quality = quality
        self.viewers: set[asyncio.StreamWriter] = set()
        self.stats = {"frames": 0, "render_cpu_s": 0.0, "encode_cpu_s": 0.0, "jpeg_bytes": 0,
                      "sent_parts": 0, "skipped_parts": 0, "viewers": 0, "requests": 0}

    async def produce(self) -> None:
        began = time.monotonic()
        frame_no = 0
        while True:
            await asyncio.sleep(max(0.0, began + frame_no / FPS - time.monotonic()))
            cpu = time.thread_time()
            image = self.pattern.render(frame_no, time.time_ns() // 1_000_000)
            drawn = time.thread_time()
            jpeg = simplejpeg.encode_jpeg(image, self.quality, colorspace="BGR", colorsubsampling="420")
            self.stats["render_cpu_s"] += drawn - cpu
            self.stats["encode_cpu_s"] += time.thread_time() - drawn
            self.stats["frames"] += 1
            self.stats["jpeg_bytes"] += len(jpeg)
            part = (b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                    + str(len(jpeg)).encode() + b"\r\n\r\n")
            for writer in list(self.viewers):
                if writer.transport.get_write_buffer_size() > BACKLOG_FRAMES * len(jpeg):
                    self.stats["skipped_parts"] += 1
                    continue
                writer.writelines((part, jpeg, b"\r\n"))
                self.stats["sent_parts"] += 1
            frame_no += 1

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"/"
            self.stats["requests"] += 1
            if path.startswith(b"/mjpeg"):
                writer.write(b"HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nConnection: close\r\n"
                             b"Content-Type: multipart/x-mixed-replace; boundary=" + BOUNDARY + b"\r\n\r\n")
                self.viewers.add(writer)
                self.stats["viewers"] = len(self.viewers)
                await reader.read()  # until the viewer leaves
                return
            body, kind, status = self._static(path)
            writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: " + kind + b"\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self.viewers.discard(writer)
            self.stats["viewers"] = len(self.viewers)
            writer.close()

    def _static(self, path: bytes) -> tuple[bytes, bytes, bytes]:
        if path == b"/":
            return PAGE, b"text/html", b"200 OK"
        if path == b"/pattern.js":
            return PATTERN_JS.read_bytes(), b"text/javascript", b"200 OK"
        if path == b"/stats":
            return json.dumps(self.stats).encode(), b"application/json", b"200 OK"
        return b"not found", b"text/plain", b"404 Not Found"


async def main(width: int, height: int, quality: int) -> None:
    server = Server(width, height, quality)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    producer = asyncio.create_task(server.produce())
    print(json.dumps({"port": listener.sockets[0].getsockname()[1]}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # the parent closes stdin
    producer.cancel()
    listener.close()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))

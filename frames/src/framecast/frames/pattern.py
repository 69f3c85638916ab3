"""The test pattern, and the timestamp blocks that let every hop measure latency from pixels.

A test-pattern frame carries its own frame number and wall-clock time as large black and white
blocks in its top rows. The blocks survive H.264 (libx264 ultrafast/zerolatency, yuv420p, at
about 500 kbit/s for 640x360), so FFmpeg, a Python receiver or a browser can read them from any
decoded frame and subtract the time it was captured from the time it is seen.

Layout (a JavaScript port must follow it exactly)
-------------------------------------------------
Everything derives from the frame width ``W`` alone:

- block size ``b = max(4, floor(floor(W / 40) / 2) * 2)`` pixels (even; 640 -> 16, 1280 -> 32,
  1920 -> 48, 320 -> 8);
- a grid of 4 rows x 32 columns of ``b x b`` blocks, its top-left corner at pixel (0, 0): the
  block in grid row ``r``, column ``c`` covers pixel rows ``r*b .. r*b+b-1`` and pixel columns
  ``c*b .. c*b+b-1``;
- the 128 blocks hold 128 bits, taken row by row, left to right, most significant bit first:
  grid rows 0-1 hold word A, grid rows 2-3 hold word B, each 64 bits:
  word A = ``ms`` (48 bits, milliseconds since the Unix epoch) then ``check(ms)`` (16 bits);
  word B = ``frame_no`` (48 bits) then ``check(frame_no)`` (16 bits);
- ``check(v)`` is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no reflection,
  no final xor; ``check(b"123456789") == 0x29B1``) of the 6 big-endian bytes of ``v``;
- a 1 bit is a white block (luma 235), a 0 bit a black block (luma 16); in RGB/BGR frames all
  three channels carry the same value, and in yuv420p frames the chroma under the blocks is 128.

Reading: for each block, average the luma (for RGB/BGR the mean of the three channels) over
its central half, pixel rows ``r*b + q .. r*b + b-q-1`` and columns ``c*b + q .. c*b + b-q-1``
with ``q = floor(b / 4)``, which stays clear of the ringing at block edges; the bit is 1 when
the average exceeds 125.5 (midway between 16 and 235). A word whose check does not match is
rejected and the frame yields no stamp: a damaged stamp is never read as a wrong value.

A frame must be at least ``32*b`` pixels wide and ``6*b`` high (the blocks plus ``2*b`` rows
of picture below them). A yuv420p frame can be read from its Y plane or from the whole
``(H*3/2, W)`` buffer, whose first ``H`` rows are the Y plane.
"""

from __future__ import annotations

from typing import NamedTuple, get_args

import numpy as np

from framecast.proto.messages import PixFmt

WHITE = 235
BLACK = 16
THRESHOLD = (WHITE + BLACK) / 2
GRID_ROWS = 4
GRID_COLUMNS = 32
PAYLOAD_BITS = 48
PIX_FMTS: tuple[str, ...] = get_args(PixFmt)

_PAYLOAD_LIMIT = 1 << PAYLOAD_BITS
_RAMP_PERIOD = 256  # px; the diagonal ramp repeats every period, so a scroll wraps seamlessly
_SCROLL_PER_FRAME = 4  # px; a multiple of 2 so the half-size chroma planes scroll with luma
_BAR_STEP = 6  # px per frame


class Stamp(NamedTuple):
    """What a frame's timestamp blocks say."""

    frame_no: int
    ms: int


def block_size(width: int) -> int:
    """Side in pixels of one timestamp block for frames ``width`` pixels wide."""
    return max(4, (width // 40) // 2 * 2)


def check_size(width: int, height: int) -> int:
    """The block size for a ``width`` x ``height`` frame; ValueError if the blocks do not fit."""
    b = block_size(width)
    if width < GRID_COLUMNS * b or height < (GRID_ROWS + 2) * b:
        raise ValueError(
            f"a {width}x{height} frame is too small for timestamp blocks: with {b} px blocks "
            f"it must be at least {GRID_COLUMNS * b} px wide and {(GRID_ROWS + 2) * b} px high"
        )
    return b


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data``."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _word(value: int, name: str) -> bytes:
    if not 0 <= value < _PAYLOAD_LIMIT:
        raise ValueError(f"{name}={value} does not fit in {PAYLOAD_BITS} unsigned bits")
    payload = value.to_bytes(6, "big")
    return payload + crc16(payload).to_bytes(2, "big")


def _frame_size(frame: np.ndarray) -> tuple[int, int]:
    if frame.dtype != np.uint8 or not (
        frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 3)
    ):
        raise ValueError(
            f"expected an HxWx3 or HxW uint8 frame, got shape {frame.shape} dtype {frame.dtype}"
        )
    return frame.shape[1], frame.shape[0]


def stamp(frame: np.ndarray, *, frame_no: int, ms: int) -> None:
    """Writes the timestamp blocks into ``frame`` in place (HxWx3 RGB/BGR or HxW gray/Y)."""
    b = check_size(*_frame_size(frame))
    bits = np.unpackbits(np.frombuffer(_word(ms, "ms") + _word(frame_no, "frame_no"), np.uint8))
    levels = np.where(bits.reshape(GRID_ROWS, GRID_COLUMNS), WHITE, BLACK).astype(np.uint8)
    blocks = np.repeat(np.repeat(levels, b, axis=0), b, axis=1)
    region = frame[: GRID_ROWS * b, : GRID_COLUMNS * b]
    region[...] = blocks if frame.ndim == 2 else blocks[:, :, np.newaxis]


def read_stamp(frame: np.ndarray) -> Stamp | None:
    """The stamp of a decoded frame, or None when the blocks are missing or damaged."""
    b = check_size(*_frame_size(frame))
    region = frame[: GRID_ROWS * b, : GRID_COLUMNS * b]
    luma = (
        region.mean(axis=2, dtype=np.float32)
        if frame.ndim == 3
        else region.astype(np.float32)
    )
    q = b // 4
    centres = luma.reshape(GRID_ROWS, b, GRID_COLUMNS, b)[:, q : b - q, :, q : b - q]
    bits = centres.mean(axis=(1, 3)) > THRESHOLD
    raw = np.packbits(bits.ravel()).tobytes()
    values = []
    for word in (raw[:8], raw[8:]):
        if crc16(word[:6]) != int.from_bytes(word[6:], "big"):
            return None
        values.append(int.from_bytes(word[:6], "big"))
    ms, frame_no = values
    return Stamp(frame_no=frame_no, ms=ms)


def _triangle(phase: np.ndarray) -> np.ndarray:
    """Levels 16..235 following a triangle wave of ``phase`` (period 1), smooth to encode."""
    return (BLACK + (WHITE - BLACK) * (1 - np.abs(2 * (phase % 1.0) - 1))).astype(np.uint8)


def _diagonal_tile(height: int, width: int, period: int, phases: tuple[float, ...]) -> np.ndarray:
    """A ``height`` x ``width + period`` diagonal ramp (one plane per phase, last axis)."""
    index = (np.arange(height)[:, None] + np.arange(width + period)[None, :]) % period
    planes = [_triangle(index / period + phase) for phase in phases]
    return planes[0] if len(planes) == 1 else np.stack(planes, axis=-1)


class TestPattern:
    """Moving test frames stamped with their frame number and time.

    ``render`` draws into one buffer allocated at construction and returns it: the array is
    overwritten by the next call, so copy it (or hand it on, e.g. to a ring) before rendering
    again. The content is a scrolling diagonal ramp and a moving bar, so consecutive frames
    always differ and an encoder cannot skip them.
    """

    __test__ = False  # not a pytest test class

    def __init__(self, width: int, height: int, pix_fmt: PixFmt = "bgr24") -> None:
        if pix_fmt not in PIX_FMTS:
            raise ValueError(f"pix_fmt {pix_fmt!r} is not one of {', '.join(PIX_FMTS)}")
        if pix_fmt == "yuv420p" and (width % 2 or height % 2):
            raise ValueError(f"yuv420p needs even dimensions, got {width}x{height}")
        self.width = width
        self.height = height
        self.pix_fmt = pix_fmt
        self._block = check_size(width, height)
        p = _RAMP_PERIOD
        if pix_fmt == "yuv420p":
            self._buffer = np.empty((height * 3 // 2, width), np.uint8)
            flat = self._buffer.reshape(-1)
            chroma = (height // 2, width // 2)
            size = chroma[0] * chroma[1]
            luma_size = height * width
            self._luma = self._buffer[:height]
            self._planes = [
                (self._luma, _diagonal_tile(height, width, p, (0.0,)), 1),
                (flat[luma_size : luma_size + size].reshape(chroma),
                 _diagonal_tile(*chroma, p // 2, (0.25,)), 2),
                (flat[luma_size + size :].reshape(chroma),
                 _diagonal_tile(*chroma, p // 2, (0.6,)), 2),
            ]
        else:
            shape = (height, width) if pix_fmt == "gray" else (height, width, 3)
            phases = (0.0,) if pix_fmt == "gray" else (0.0, 1 / 3, 2 / 3)
            if pix_fmt == "rgb24":
                phases = phases[::-1]
            self._buffer = np.empty(shape, np.uint8)
            self._luma = self._buffer
            self._planes = [(self._buffer, _diagonal_tile(height, width, p, phases), 1)]

    def render(self, frame_no: int, ms: int) -> np.ndarray:
        """Draws frame ``frame_no`` stamped with ``ms`` and returns the (reused) buffer."""
        shift = (frame_no * _SCROLL_PER_FRAME) % _RAMP_PERIOD
        for plane, tile, subsampling in self._planes:
            start = shift // subsampling
            np.copyto(plane, tile[:, start : start + plane.shape[1]])
        b = self._block
        bar = (frame_no * _BAR_STEP) % (self.width - b)
        self._buffer[GRID_ROWS * b : self.height, bar : bar + b] = WHITE
        if self.pix_fmt == "yuv420p":
            for chroma, _, _ in self._planes[1:]:
                chroma[: GRID_ROWS * b // 2, : GRID_COLUMNS * b // 2] = 128
        stamp(self._luma, frame_no=frame_no, ms=ms)
        return self._buffer

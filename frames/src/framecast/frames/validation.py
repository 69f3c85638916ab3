"""What a frame must be before a transport takes it, and the errors that say what is wrong.

Both transports check a frame the same way before touching it, so a CV worker gets the same
error (naming what was expected and what came) whichever transport its stream uses.
"""

from __future__ import annotations

import numpy as np

from framecast.proto.messages import VideoFormat

_UINT8 = np.dtype(np.uint8)


class FrameFormatError(ValueError):
    """A frame whose shape or dtype does not match its stream's format."""

    def __init__(
        self, stream: str, fmt: VideoFormat, shape: tuple[int, ...], dtype: str
    ) -> None:
        self.stream = stream
        self.format = fmt
        self.expected = (fmt.shape, "uint8")
        self.received = (tuple(shape), dtype)
        super().__init__(
            f"frame has shape {self.received[0]} and dtype {dtype}; stream {stream} expects "
            f"{fmt.shape} uint8 ({fmt.width}x{fmt.height} {fmt.pix_fmt})"
        )


class FrameTooLargeError(ValueError):
    """A frame that does not fit in one message under the NATS server's ``max_payload``."""

    def __init__(self, size: int, max_payload: int) -> None:
        self.size = size
        self.max_payload = max_payload
        super().__init__(
            f"a frame of {size} bytes (with its headers) exceeds the NATS server's max_payload "
            f"of {max_payload} bytes: use the shm transport when capture and encoder share a "
            f"host, or raise max_payload in the NATS server config"
        )


def validate_frame(frame: np.ndarray, fmt: VideoFormat, stream: str) -> None:
    """Raises FrameFormatError unless ``frame`` is a uint8 array of ``fmt``'s shape."""
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"a frame must be a numpy array, got {type(frame).__name__}")
    if frame.shape != fmt.shape or frame.dtype != _UINT8:
        raise FrameFormatError(stream, fmt, frame.shape, str(frame.dtype))

"""framecast capture: the Python SDK a CV worker uses and the frame sources.

    import framecast.capture

    with framecast.capture.open("cam1", width=640, height=360, fps=30) as stream:
        stream.send(frame)  # numpy uint8, H x W x 3, bgr24
"""

from framecast.frames import FrameFormatError, FrameTooLargeError

from .producer import StreamClosed
from .sdk import AsyncStream, Stream, open

__all__ = ["AsyncStream", "FrameFormatError", "FrameTooLargeError", "Stream", "StreamClosed", "open"]

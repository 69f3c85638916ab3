"""The base of every error the encoder raises, so a caller can catch them as one."""

from framecast.proto.errors import FramecastError


class EncoderError(FramecastError):
    """Base of every error raised by framecast.encoder."""

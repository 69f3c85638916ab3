"""The base of every error the encoder raises, so a caller can catch them as one."""


class EncoderError(Exception):
    """Base of every error raised by framecast.encoder."""

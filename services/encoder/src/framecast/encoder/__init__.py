"""framecast.encoder: supervised FFmpeg processes publishing streams as H.264 over RTSP."""

from .errors import EncoderError
from .probe import EncoderUnavailable, NoUsableEncoder
from .service import EncoderService, lifespan
from .settings import EncoderSettings
from .supervisor import Supervisor, SupervisorEvent, SupervisorPolicy

__all__ = [
    "EncoderError",
    "EncoderService",
    "EncoderSettings",
    "EncoderUnavailable",
    "NoUsableEncoder",
    "Supervisor",
    "SupervisorEvent",
    "SupervisorPolicy",
    "lifespan",
]

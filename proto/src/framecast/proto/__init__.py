"""framecast contracts: the messages, subjects and state machine every service shares,
the typed NATS bus that carries them, and the runtime every service process runs on."""

from .bus import Bus
from .codec import MessageDecodeError, decode, encode
from .errors import BusError, NatsUnavailable, NoResponders, RequestRejected, RequestTimedOut
from .runtime import Runtime, run, serve
from .states import IllegalTransition, StreamState, check_transition
from .store import StateStore, ensure_jetstream

__all__ = [
    "Bus",
    "BusError",
    "IllegalTransition",
    "MessageDecodeError",
    "NatsUnavailable",
    "NoResponders",
    "RequestRejected",
    "RequestTimedOut",
    "Runtime",
    "StateStore",
    "StreamState",
    "check_transition",
    "decode",
    "encode",
    "ensure_jetstream",
    "run",
    "serve",
]

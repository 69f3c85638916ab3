"""The root of framecast's errors, and the typed errors of the bus (subject, code, timeout).

Every error framecast raises on purpose derives from :class:`FramecastError`: its message is
written for an operator, so a service's ``run`` prints it as one line and exits with
``exit_code``, without a traceback.
"""

from __future__ import annotations

from typing import ClassVar


class FramecastError(Exception):
    """Base of every error framecast raises on purpose; ``str(error)`` is for an operator."""

    exit_code: ClassVar[int] = 1
    """The exit status of a process this error stops (2: a bad setting or argument)."""
    rejection: ClassVar[str] = ""
    """When a request handler raises it: the ``Rejected`` code its caller gets, with the message
    (empty: the caller gets only "internal error", the details stay in the service's log)."""


class BusError(FramecastError):
    """Base of every error raised by the framecast bus."""


class NatsUnavailable(BusError):
    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        self.detail = detail
        super().__init__(
            f"cannot reach NATS at {url}: {detail}. Start one (make demo does) or set FRAMECAST_NATS_URL."
        )


class BadNatsUrl(BusError):
    """FRAMECAST_NATS_URL cannot be a NATS server's address (nats-py refused to parse it)."""

    exit_code = 2

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(f"FRAMECAST_NATS_URL: {url!r} is not a NATS URL (nats://host:port, tls://host:port, "
                         "several separated by commas)")


class NoResponders(BusError):
    """Nobody listens on a request subject: the service that answers it is not running."""

    def __init__(self, subject: str, service: str) -> None:
        self.subject = subject
        self.service = service
        super().__init__(f"no {service} service is answering on {subject}; is it running?")


class RequestTimedOut(BusError):
    def __init__(self, subject: str, service: str, timeout: float) -> None:
        self.subject = subject
        self.service = service
        self.timeout = timeout
        super().__init__(f"the {service} service did not answer on {subject} within {timeout:g} s")


class RequestRejected(BusError):
    """The service answered, and said no; ``code`` maps to an HTTP status at the edge."""

    def __init__(self, subject: str, code: str, message: str) -> None:
        self.subject = subject
        self.code = code
        self.message = message
        super().__init__(message)


class InvalidFormat(FramecastError, ValueError):
    """A video format framecast cannot encode (odd size, out of range): refused where it is made."""

    exit_code = 2
    rejection = "bad_request"


class CorruptRecord(FramecastError):
    """A stream's record in the state bucket cannot be read; an operator repairs or deletes it."""

    rejection = "conflict"

    def __init__(self, stream_id: str, detail: str) -> None:
        self.stream_id = stream_id
        self.detail = detail
        super().__init__(
            f"the record of stream {stream_id} cannot be read ({detail}); `framecast stream repair "
            f"{stream_id}` marks it failed, `framecast stream delete {stream_id}` removes it"
        )

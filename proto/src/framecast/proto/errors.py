"""Typed errors of the bus, carrying what a caller needs to act (subject, code, timeout)."""

from __future__ import annotations


class BusError(Exception):
    """Base of every error raised by the framecast bus."""


class NatsUnavailable(BusError):
    def __init__(self, url: str, detail: str) -> None:
        self.url = url
        self.detail = detail
        super().__init__(
            f"cannot reach NATS at {url}: {detail}. Start one (make demo does) or set FRAMECAST_NATS_URL."
        )


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

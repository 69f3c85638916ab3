"""A thin typed layer over nats-py: proto messages in and out, trace context in the headers.

Every publish opens a PRODUCER span and injects W3C trace context into the NATS headers; every
handler runs inside a CONSUMER span whose parent is extracted from those headers, so one
request is one trace across services. A message that does not decode never reaches a handler:
it is logged with the subject and field, and a request gets a ``Rejected`` reply instead.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import nats
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import JetStreamContext
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from . import codec, subjects
from .errors import (
    BadNatsUrl,
    BusError,
    FramecastError,
    NatsUnavailable,
    NoResponders,
    RequestRejected,
    RequestTimedOut,
)
from .messages import Rejected

log = logging.getLogger("framecast.bus")

_CONNECTION_DOWN = (
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionDrainingError,
    nats.errors.OutboundBufferLimitError,
)
"""What nats-py raises for a request or publish while it has no connection."""

UNAVAILABLE = (
    BusError,
    NatsTimeout,
    NoRespondersError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
    *_CONNECTION_DOWN,
)
"""Every error that means "NATS or JetStream cannot be reached right now", from the bus or from
nats-py's JetStream and KV calls (the state store's): what a caller retries once the bus is back.
On a cluster that includes a stream with no leader for the moment (one is being elected after
the loss of a node): a write to it finds no responder."""

_NATS_AWAY = tuple(error for error in UNAVAILABLE if error is not BusError)
"""nats-py's errors among them: what a handler raises when NATS or JetStream is away for now."""

OUTAGE_REPORT_S = 30.0
"""How often a NATS outage that goes on is reported again."""
tracer = trace.get_tracer("framecast.bus")

T = TypeVar("T", bound=msgspec.Struct)
Handler = Callable[[Any, Msg], Awaitable[msgspec.Struct | None]]


def _attributes(subject: str, operation: str, size: int, client_id: str) -> dict[str, Any]:
    return {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.operation.type": operation,
        "messaging.message.body.size": size,
        "messaging.client.id": client_id,
    }


def redacted(url: str) -> str:
    """``url`` without its passwords, for log lines and errors."""
    return re.sub(r"(://[^:/@,\s]+):[^@,\s]*@", r"\1:***@", url)


def credentials(url: str) -> dict[str, str]:
    """nats-py options for the user in ``url`` (``nats://user:password@host:4222``).

    The user and password are passed as options too, so that servers a cluster gossips (which
    come without them) accept the connection as well. The inbox is named after the user
    (``_INBOX.<user>``) so that NATS permissions can let each user read its own replies only:
    issued tokens travel in replies (deploy/nats/users.conf).
    """
    parts = urllib.parse.urlsplit(url)
    if not parts.username:
        return {}
    user = urllib.parse.unquote(parts.username)
    return {"user": user, "password": urllib.parse.unquote(parts.password or ""),
            "inbox_prefix": subjects.inbox_prefix(user)}


async def settle(nc: Client) -> None:
    """Until the server has processed everything ``nc`` sent before this call.

    nats-py's ``flush()`` writes its PING straight to the socket while commands queued before
    it (a SUB, a PUB) may still wait for the client's flusher task, so its PONG can come back
    before the server has seen them. That task runs before the first PONG can be read, so the
    second PING goes out behind everything queued before the call.

    Each flush is shielded: nats-py resolves PONGs in order against the futures of its PINGs
    and calls ``set_result`` on whatever is first, so a flush cancelled while it waits (a task
    stopped mid-subscribe) would leave a cancelled future there; the next PONG then raises in
    nats-py's read loop, which drops the connection. Shielded, the PING's future still gets
    its PONG after our caller has gone.
    """
    await asyncio.shield(nc.flush())
    await asyncio.shield(nc.flush())


class Bus:
    """One NATS connection of one service instance, speaking proto messages."""

    def __init__(self, nc: Client, client_id: str) -> None:
        self.nc = nc
        self.client_id = client_id
        self.closing = False
        self._js: JetStreamContext | None = None
        self._watchers: list[tuple[Callable[[], None], Callable[[], None]]] = []

    def watch_connection(self, on_lost: Callable[[], None], on_back: Callable[[], None]) -> None:
        """Call ``on_lost()`` when the connection to NATS drops and ``on_back()`` once it is up
        again, e.g. to distrust state mirrored from a JetStream watch across the gap."""
        self._watchers.append((on_lost, on_back))

    def _connection_changed(self, up: bool) -> None:
        for on_lost, on_back in self._watchers:
            try:
                (on_back if up else on_lost)()
            except Exception:
                log.exception("a connection watcher failed")

    @classmethod
    async def connect(
        cls, url: str, *, client_id: str, connect_timeout: float = 10.0, **options: Any
    ) -> Bus:
        """Connect, retrying until ``connect_timeout``; reconnect forever once connected.

        ``url`` may name several servers of a cluster, separated by commas: any one that answers
        will do, and nats-py learns the cluster's other members from it, so a service rides out
        the loss of the node it is connected to."""
        shown = redacted(url)
        connected = False
        last_error = "no answer"
        bus: Bus | None = None
        # An outage is reported when it starts, every OUTAGE_REPORT_S while it lasts and when it
        # ends: nats-py retries (and calls back) four times a second, which a log must not echo.
        outage_since: float | None = None
        reported_at = 0.0

        def begin_outage(detail: str) -> None:
            nonlocal outage_since, reported_at
            if outage_since is None and bus is not None and not bus.closing:
                outage_since = reported_at = time.monotonic()
                bus._connection_changed(up=False)
                log.warning("lost the connection to NATS (%s); reconnecting", detail, extra={"nats_url": shown})

        async def disconnected() -> None:
            begin_outage(last_error if connected else "disconnected")

        async def reconnected() -> None:
            nonlocal outage_since
            lasted = f" after {time.monotonic() - outage_since:.1f} s" if outage_since is not None else ""
            outage_since = None
            if bus is not None:
                bus._connection_changed(up=True)
            log.info("reconnected to NATS%s", lasted, extra={"nats_url": shown})

        async def error(exc: Exception) -> None:
            nonlocal last_error, reported_at
            last_error = str(exc) or type(exc).__name__
            if not connected:
                return
            now = time.monotonic()
            lost = isinstance(exc, OSError | nats.errors.UnexpectedEOF | nats.errors.StaleConnectionError)
            if outage_since is None and lost:
                begin_outage(last_error)  # nats-py reports the lost socket before "disconnected"
            elif outage_since is None:
                log.warning("NATS connection error: %s", last_error, extra={"nats_url": shown})
            elif now - reported_at >= OUTAGE_REPORT_S:
                reported_at = now
                log.warning("still disconnected from NATS after %.0f s: %s", now - outage_since, last_error,
                            extra={"nats_url": shown})

        try:
            nc = await asyncio.wait_for(
                nats.connect(
                    [server.strip() for server in url.split(",") if server.strip()],
                    name=client_id,
                    connect_timeout=2,
                    reconnect_time_wait=0.25,
                    max_reconnect_attempts=-1,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                    error_cb=error,
                    **{**credentials(url), **options},
                ),
                connect_timeout,
            )
        except (TimeoutError, OSError, nats.errors.NoServersError) as exc:
            raise NatsUnavailable(shown, last_error if isinstance(exc, asyncio.TimeoutError) else str(exc)) from None
        except nats.errors.Error as exc:
            if "invalid connect url" in str(exc):
                raise BadNatsUrl(shown) from None
            raise NatsUnavailable(shown, str(exc)) from None
        connected = True
        bus = cls(nc, client_id)
        return bus

    @property
    def connected(self) -> bool:
        """Whether the connection to NATS is up now (false while nats-py reconnects)."""
        return self.nc.is_connected

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            self._js = self.nc.jetstream()
        return self._js

    # ----- sending -------------------------------------------------------------------------

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        propagate.inject(headers)
        return headers

    async def publish(
        self, subject: str, message: msgspec.Struct, *, headers: dict[str, str] | None = None
    ) -> None:
        payload = codec.encode(message)
        with tracer.start_as_current_span(
            f"publish {subject}",
            kind=SpanKind.PRODUCER,
            attributes=_attributes(subject, "send", len(payload), self.client_id),
        ):
            await self.nc.publish(subject, payload, headers=self._headers(headers))

    async def js_publish(self, subject: str, message: msgspec.Struct, *, msg_id: str = "") -> int:
        """Publish into JetStream and wait for the server to store it; returns the sequence.

        With ``msg_id`` JetStream stores a message of that id once within the stream's
        duplicate window, so a publish whose acknowledgement was lost can be sent again."""
        payload = codec.encode(message)
        with tracer.start_as_current_span(
            f"publish {subject}",
            kind=SpanKind.PRODUCER,
            attributes=_attributes(subject, "send", len(payload), self.client_id),
        ):
            headers = self._headers({"Nats-Msg-Id": msg_id} if msg_id else None)
            ack = await self.js.publish(subject, payload, headers=headers)
            return ack.seq

    async def request(
        self,
        subject: str,
        message: msgspec.Struct,
        reply_type: type[T],
        *,
        service: str,
        timeout: float = 2.0,
    ) -> T:
        """Send a request and return its typed reply.

        Raises ``NoResponders`` or ``RequestTimedOut`` naming ``service``, and
        ``RequestRejected`` when the service answered with a ``Rejected``.
        """
        payload = codec.encode(message)
        with tracer.start_as_current_span(
            f"send {subject}",
            kind=SpanKind.PRODUCER,
            attributes=_attributes(subject, "send", len(payload), self.client_id),
        ) as span:
            try:
                reply = await self.nc.request(
                    subject, payload, timeout=timeout, headers=self._headers()
                )
            except NoRespondersError:
                span.set_status(Status(StatusCode.ERROR, "no responders"))
                raise NoResponders(subject, service) from None
            except NatsTimeout:
                span.set_status(Status(StatusCode.ERROR, "timeout"))
                raise RequestTimedOut(subject, service, timeout) from None
            except _CONNECTION_DOWN as exc:  # nats-py refuses at once while it reconnects
                span.set_status(Status(StatusCode.ERROR, "not connected"))
                raise NatsUnavailable(redacted(self.nc.connected_url.geturl() if self.nc.connected_url else ""),
                                      str(exc) or type(exc).__name__) from None
            answer = codec.decode(subject, reply.data, reply_type | Rejected)
            if isinstance(answer, Rejected):
                span.set_attribute("framecast.rejected.code", answer.code)
                raise RequestRejected(subject, answer.code, answer.message)
            return answer

    # ----- receiving -----------------------------------------------------------------------

    async def subscribe(
        self,
        subject: str,
        message_type: Any,
        handler: Handler,
        *,
        queue: str = "",
    ) -> Subscription:
        """Call ``handler(message, raw_msg)`` for each message that decodes as ``message_type``.

        If the message is a request, the handler's return value is sent as the reply; a
        handler that raises answers ``Rejected(internal)`` with no detail on the wire. When
        this returns, the server has the subscription: a request from any connection reaches it.
        """

        async def on_message(msg: Msg) -> None:
            context = propagate.extract(msg.headers or {})
            attributes = _attributes(msg.subject, "process", len(msg.data), self.client_id)
            if queue:
                attributes["messaging.consumer.group.name"] = queue
            with tracer.start_as_current_span(
                f"process {subject}", context=context, kind=SpanKind.CONSUMER, attributes=attributes
            ) as span:
                reply: msgspec.Struct | None
                try:
                    message = codec.decode(msg.subject, msg.data, message_type)
                except codec.MessageDecodeError as exc:
                    log.warning("%s", exc, extra={"subject": msg.subject, "field": exc.field})
                    span.set_status(Status(StatusCode.ERROR, "undecodable message"))
                    reply = Rejected(code="bad_request", message=str(exc))
                else:
                    try:
                        reply = await handler(message, msg)
                    except Exception as exc:
                        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                        if isinstance(exc, FramecastError) and exc.rejection:  # the caller's to act on
                            log.warning("%s", exc, extra={"subject": msg.subject})
                            reply = Rejected(code=exc.rejection, message=str(exc))  # type: ignore[arg-type]
                        elif isinstance(exc, _NATS_AWAY):  # passing (a reconnection, a leader election)
                            log.warning("handler for %s: NATS or JetStream did not answer (%s)", msg.subject,
                                        str(exc) or type(exc).__name__, extra={"subject": msg.subject})
                            reply = Rejected(code="unavailable", message="NATS or JetStream is not answering "
                                             "right now (a node lost, a leader being elected); try again")
                        else:
                            log.exception("handler for %s failed", msg.subject)
                            span.record_exception(exc)
                            reply = Rejected(code="internal", message="internal error; see the service log")
                if msg.reply and reply is not None:
                    await self.nc.publish(msg.reply, codec.encode(reply), headers=self._headers())

        subscription = await self.nc.subscribe(subject, queue=queue, cb=on_message)
        await settle(self.nc)  # the server knows the subscription before anyone is told it exists
        return subscription

    # ----- shutdown --------------------------------------------------------------------------

    async def close(self) -> None:
        """Drain subscriptions and pending publishes, then close. Safe to call twice."""
        self.closing = True
        if self.nc.is_closed or self.nc.is_draining:
            return
        try:
            await self.nc.drain()
        except (TimeoutError, NatsTimeout, nats.errors.ConnectionClosedError):
            await self.nc.close()

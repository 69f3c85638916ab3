"""The gateway's HTTP routes: streams and their state, start and stop, playback, live events; readiness.

Reads come from the in-memory ``StateView``; starting and stopping are requests to the capture
service and playback tokens requests to the auth service, both over NATS. Every route under
/api needs an authenticated viewer whose identity covers the stream it names. Errors are raised
as typed exceptions and turned into problem documents in one place (``app.py``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request, Response, Router, delete, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ClientException, NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter
from litestar.response import ServerSentEvent

from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.ids import STREAM_ID_PATTERN
from framecast.proto.messages import (
    Accepted,
    StartStream,
    StopStream,
    StreamRecord,
    TokenIssued,
    TokenRequest,
    VideoFormat,
)
from framecast.proto.store import StateStore
from framecast.runtime.lease import TokenLease
from framecast.runtime.mediamtx_nodes import MediaMTXNode, choose_viewer_node, origins
from framecast.runtime.problems import MEDIA_TYPE, Problem

from .events import StateView, event_stream, last_sequence
from .metrics import gateway_instruments
from .schemas import Playback, Readiness, StartRequest, StreamView, stream_view
from .settings import GatewaySettings
from .viewers import Authenticator, NotAllowed, Viewer

__all__ = ["Gateway", "api_router", "readiness"]

READ_YOUR_WRITES_S = 1.0
"""After a start or stop, wait this long at most for the view to show it, so that the caller's
next GET sees its own change."""

StreamIdInPath = Annotated[
    str, PathParameter(pattern=STREAM_ID_PATTERN, description="1-64 letters, digits, '_' or '-'.")
]


@dataclass(frozen=True)
class Gateway:
    """What the routes work with; built by the service's lifespan (or a test)."""

    bus: Bus
    store: StateStore
    view: StateView
    authenticator: Authenticator
    settings: GatewaySettings

    @property
    def ready(self) -> bool:
        return self.bus.nc.is_connected and self.view.loaded

    @functools.cached_property
    def nodes(self) -> tuple[MediaMTXNode, ...]:
        return self.settings.nodes()

    def node_of(self, stream_id: str) -> MediaMTXNode:
        """The MediaMTX node ``stream_id`` publishes to: the one its record names, else the first."""
        nodes = self.nodes
        record = self.view.records.get(stream_id)
        named = record.mediamtx_node if record is not None else ""
        return next((node for node in nodes if node.name == named), origins(nodes)[0])

    def viewer_node(self, stream_id: str) -> MediaMTXNode:
        """Where the next viewer of ``stream_id`` plays it: its origin, or once that serves
        ``gateway_edge_after`` viewers of it, the least loaded of the origin and its edges.
        The choice counts as a reader there until the next poll, so a burst of joins spreads."""
        origin = self.node_of(stream_id)
        health = self.view.paths.get(stream_id)
        node = choose_viewer_node(origin, self.nodes, stream_readers=health.readers if health else 0,
                                  node_readers=self.view.node_readers,
                                  edge_after=self.settings.gateway_edge_after)
        if node.name in self.view.node_readers:
            self.view.node_readers[node.name] += 1
        return node


GatewayDep = NamedDependency[Gateway]
ViewerDep = NamedDependency[Viewer]


def _problems(*statuses: int) -> dict[int, ResponseSpec]:
    return {
        status: ResponseSpec(Problem, description=DESCRIPTIONS[status], generate_examples=False,
                             media_type=MEDIA_TYPE)
        for status in statuses
    }


DESCRIPTIONS = {
    400: "The request is malformed; `detail` names the field.",
    401: "No credentials, or credentials that are not accepted (see WWW-Authenticate).",
    403: "The caller's identity does not cover this stream.",
    404: "No such stream.",
    409: "The stream is in a state that does not allow this (e.g. already running).",
    502: "The service that answers this (capture or auth) failed; the details are in its log.",
    503: "A service this needs (capture, auth, NATS, the identity provider) is not answering.",
}


# ----- /api ----------------------------------------------------------------------------------------


async def provide_viewer(request: Request[Any, Any, Any], gateway: GatewayDep) -> Viewer:
    return await gateway.authenticator.authenticate(request.headers)


def _allowed(viewer: Viewer, stream_id: str) -> None:
    if not viewer.may_watch(stream_id):
        raise NotAllowed(viewer, stream_id)


def _record(gateway: Gateway, viewer: Viewer, stream_id: str) -> StreamRecord:
    _allowed(viewer, stream_id)
    record = gateway.view.records.get(stream_id)
    if record is None:
        raise NotFoundException(detail=f"there is no stream {stream_id!r}; GET /api/streams lists them")
    return record


async def _settled(gateway: Gateway, stream_id: str, before: StreamRecord | None, after: StreamRecord) -> None:
    """Wait (briefly) until the view has the change that ``after`` records."""
    if before != after:
        await gateway.view.wait_for(lambda: gateway.view.records.get(stream_id) is not before, READ_YOUR_WRITES_S)


@get("/streams", summary="Every stream the caller may watch", responses=_problems(401, 503))
async def list_streams(gateway: GatewayDep, viewer: ViewerDep) -> list[StreamView]:
    records = sorted(gateway.view.records.values(), key=lambda r: r.stream_id)
    return [stream_view(r, gateway.view) for r in records if viewer.may_watch(r.stream_id)]


@get("/streams/{stream_id:str}", summary="One stream", responses=_problems(400, 401, 403, 404, 503))
async def get_stream(gateway: GatewayDep, viewer: ViewerDep, stream_id: StreamIdInPath) -> StreamView:
    return stream_view(_record(gateway, viewer, stream_id), gateway.view)


@post("/streams", summary="Start a stream (capture runs its source)", status_code=202,
      responses=_problems(400, 401, 403, 409, 502, 503))
async def start_stream(gateway: GatewayDep, viewer: ViewerDep, data: JSONBody[StartRequest]) -> StreamView:
    _allowed(viewer, data.stream_id)
    request = StartStream(
        stream_id=data.stream_id,
        source=data.source,
        format=VideoFormat(width=data.width, height=data.height, fps=data.fps),
        transport=data.transport,
    )
    before = gateway.view.records.get(data.stream_id)
    reply = await gateway.bus.request(subjects.STREAM_START, request, Accepted, service="capture",
                                      timeout=gateway.settings.gateway_request_timeout_s)
    await _settled(gateway, data.stream_id, before, reply.stream)
    return stream_view(reply.stream, gateway.view)


@delete("/streams/{stream_id:str}", summary="Stop a stream", status_code=202,
        responses=_problems(400, 401, 403, 404, 409, 502, 503))
async def stop_stream(gateway: GatewayDep, viewer: ViewerDep, stream_id: StreamIdInPath) -> StreamView:
    _allowed(viewer, stream_id)
    before = gateway.view.records.get(stream_id)
    reply = await gateway.bus.request(
        subjects.STREAM_STOP, StopStream(stream_id=stream_id, reason=f"stop requested by {viewer.subject}"),
        Accepted, service="capture", timeout=gateway.settings.gateway_request_timeout_s,
    )
    await _settled(gateway, stream_id, before, reply.stream)
    return stream_view(reply.stream, gateway.view)


@post("/streams/{stream_id:str}/playback", summary="URLs and a viewer token to play a stream",
      status_code=200, responses=_problems(400, 401, 403, 404, 502, 503))
async def playback(gateway: GatewayDep, viewer: ViewerDep, stream_id: StreamIdInPath) -> Response[Playback]:
    _record(gateway, viewer, stream_id)
    lease = TokenLease(await gateway.bus.request(
        subjects.AUTH_TOKEN_ISSUE,
        TokenRequest(role="viewer", stream_id=stream_id, subject=viewer.subject),
        TokenIssued, service="auth", timeout=gateway.settings.gateway_request_timeout_s,
    ))
    gateway_instruments().playbacks.add(1)
    node = gateway.viewer_node(stream_id)
    return Response(
        Playback(
            whep_url=f"{node.whep.rstrip('/')}/{stream_id}/whep",
            hls_url=f"{node.hls.rstrip('/')}/{stream_id}/index.m3u8",
            token=lease.token,
            expires_at=lease.issued.expires_at,
            expires_in=round(lease.remaining(), 3),
            mediamtx_node=node.name,
        ),
        headers={"Cache-Control": "no-store"},
    )


@get("/events", summary="Live events: `transition` (with a resumable id) and `stats`",
     media_type="text/event-stream", responses=_problems(400, 401, 403, 503))
async def events(
    gateway: GatewayDep,
    viewer: ViewerDep,
    stream: Annotated[
        str | None, QueryParameter(pattern=STREAM_ID_PATTERN, description="Only this stream's events.")
    ] = None,
    last_event_id: Annotated[
        str | None, HeaderParameter(name="Last-Event-ID", description="Resume after this event id.")
    ] = None,
) -> ServerSentEvent:
    if stream is not None:
        _allowed(viewer, stream)
    if last_event_id is None:
        after = await last_sequence(gateway.bus)
    elif last_event_id.isdigit() and last_event_id.isascii():
        after = int(last_event_id)
    else:
        raise ClientException(detail="Last-Event-ID must be the id of an event this API sent (a number)")
    return ServerSentEvent(
        event_stream(gateway.view, gateway.store, viewer, stream_id=stream, after=after,
                     keepalive_s=gateway.settings.gateway_keepalive_s)
    )


def api_router() -> Router:
    return Router(
        "/api",
        route_handlers=[list_streams, get_stream, start_stream, stop_stream, playback, events],
        dependencies={"viewer": Provide(provide_viewer)},
        security=[{"bearer": []}, {"apiKey": []}],
        tags=["streams"],
    )


# ----- probes ---------------------------------------------------------------------------------------


def readiness(gateway: Gateway) -> Readiness:
    """NATS connected and the stream states loaded; MediaMTX's state is shown, never required."""
    view = gateway.view
    return Readiness(
        status="ready" if gateway.ready else "not ready",
        nats="connected" if gateway.bus.nc.is_connected else "disconnected",
        state="loaded" if view.loaded else "loading",
        mediamtx=view.mediamtx,
        detail=view.mediamtx_problem,
    )

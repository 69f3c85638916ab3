"""The gateway's stream API over real HTTP, against a real nats-server and the real capture service.

The gateway runs through its own service lifespan (uvicorn on a free port, the state view, the
reconciler polling a MediaMTX stand-in). Start and stop go to the real capture service run
in-process. Playback tokens come from a responder on the auth subject that signs with the auth
service's real ``TokenIssuer``: the auth service's NATS part does not exist yet.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import nats.errors
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from framecast.auth.tokens import TokenIssuer, TokenVerifier
from framecast.capture.service import CaptureSettings
from framecast.capture.service import lifespan as capture_lifespan
from framecast.devstack.nats import NatsServer
from framecast.gateway.app import create_app, problem_for
from framecast.gateway.service import GatewayService, lifespan
from framecast.gateway.settings import GatewaySettings
from framecast.gateway.viewers import Authenticator, Viewer
from framecast.proto import subjects
from framecast.proto.bus import Bus
from framecast.proto.errors import RequestRejected, RequestTimedOut
from framecast.proto.messages import StreamStats, TokenRequest, UrlSource
from framecast.proto.states import StreamState
from framecast.proto.store import StateStore
from framecast.runtime.lifecycle import Runtime
from tests.support.fake_mediamtx import FakeMediaMTX, serve_asgi
from tests.support.services import running, wait_for_state

API_KEY = secrets.token_urlsafe(24)
STREAM_KEYS = {
    "stream_id", "state", "reason", "source", "format", "encoder_id", "encoder_kind", "transport", "placement",
    "mediamtx_node", "stats", "readers", "codec", "profile", "mediamtx", "metadata", "updated_at",
}
PROBLEM_KEYS = {"type", "title", "status", "detail"}


@pytest.fixture
async def mediamtx() -> AsyncIterator[FakeMediaMTX]:
    async with FakeMediaMTX() as fake:
        yield fake


@pytest.fixture
async def gateway(nats_server: NatsServer, mediamtx: FakeMediaMTX) -> AsyncIterator[GatewayService]:
    """The gateway service, started by its lifespan, with the view loaded."""
    settings = GatewaySettings(
        nats_url=nats_server.url, gateway_addr="127.0.0.1:0", gateway_api_key=API_KEY,
        mediamtx_api=mediamtx.url, mediamtx_api_token="static-api-token", gateway_request_timeout_s=2.0,
    )
    async with lifespan(Runtime("gateway", settings, "gateway-test")) as service:
        view = service.gateway.view
        assert await view.wait_for(lambda: view.loaded, 10)
        yield service


@pytest.fixture
async def capture(nats_server: NatsServer) -> AsyncIterator[Runtime[Any]]:
    """The real capture service, in this process."""
    settings = CaptureSettings(nats_url=nats_server.url)
    async with running("capture", settings, capture_lifespan, instance="capture-test") as runtime:
        yield runtime


def start_body(stream_id: str, **changes: Any) -> dict[str, Any]:
    return {"stream_id": stream_id, "source": {"kind": "testpattern"}, "width": 160, "height": 96, "fps": 5,
            **changes}


def assert_problem(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert PROBLEM_KEYS <= problem.keys() and problem["status"] == status
    for word in words:
        assert word in problem["detail"], problem
    assert "Traceback" not in response.text
    return problem


# ----- start, list, get, stop ----------------------------------------------------------------------


async def test_start_list_get_stop_through_the_real_capture_service(
    client: httpx.AsyncClient, capture: Runtime[Any], store: StateStore, stream_id: str
) -> None:
    response = await client.post("/api/streams", json=start_body(stream_id))
    assert response.status_code == 202, response.text
    started = response.json()
    assert set(started) == STREAM_KEYS
    assert started["stream_id"] == stream_id
    assert started["state"] in ("requested", "starting")
    assert started["source"] == {"kind": "testpattern"}
    assert started["format"] == {"width": 160, "height": 96, "fps": 5, "pix_fmt": "bgr24"}
    assert started["readers"] == 0 and started["stats"] is None

    listed = (await client.get("/api/streams")).json()
    assert stream_id in [s["stream_id"] for s in listed]
    one = await client.get(f"/api/streams/{stream_id}")
    assert one.status_code == 200 and set(one.json()) == STREAM_KEYS

    stopped = await client.delete(f"/api/streams/{stream_id}")
    assert stopped.status_code == 202, stopped.text
    assert stopped.json()["state"] in ("stopping", "stopped")
    await wait_for_state(store, stream_id, StreamState.STOPPED, timeout=15)


async def test_starting_a_running_stream_is_a_conflict(
    client: httpx.AsyncClient, capture: Runtime[Any], stream_id: str
) -> None:
    assert (await client.post("/api/streams", json=start_body(stream_id))).status_code == 202
    again = await client.post("/api/streams", json=start_body(stream_id))
    assert_problem(again, 409, stream_id, "stop it first")
    await client.delete(f"/api/streams/{stream_id}")


async def test_capture_refusal_is_passed_on_as_a_bad_request(
    client: httpx.AsyncClient, capture: Runtime[Any], stream_id: str, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.mp4"
    response = await client.post("/api/streams", json=start_body(
        stream_id, source={"kind": "file", "path": str(missing)}))
    assert_problem(response, 400, str(missing), "does not exist")


async def test_stopping_an_unknown_stream_is_not_found(
    client: httpx.AsyncClient, capture: Runtime[Any], stream_id: str
) -> None:
    assert_problem(await client.delete(f"/api/streams/{stream_id}"), 404, stream_id)


async def test_missing_capture_service_is_503_naming_it(client: httpx.AsyncClient, stream_id: str) -> None:
    problem = assert_problem(await client.post("/api/streams", json=start_body(stream_id)), 503,
                             "no capture service is answering")
    assert subjects.STREAM_START in problem["detail"]
    assert_problem(await client.delete(f"/api/streams/{stream_id}"), 503, "capture")


async def test_unknown_stream_is_404(client: httpx.AsyncClient, stream_id: str) -> None:
    assert_problem(await client.get(f"/api/streams/{stream_id}"), 404, stream_id)
    assert_problem(await client.post(f"/api/streams/{stream_id}/playback"), 404, stream_id)


BAD_BODIES = [
    ({"width": 15}, "width"),
    ({"height": 7681}, "height"),
    ({"fps": 0}, "fps"),
    ({"stream_id": "no spaces"}, "stream_id"),
    ({"source": {"kind": "webcam"}}, "source"),
    ({"source": {"kind": "file"}}, "path"),
    ({"transport": "carrier-pigeon"}, "transport"),
]


async def test_bad_body_is_400_naming_the_field(client: httpx.AsyncClient, stream_id: str) -> None:
    for change, field in BAD_BODIES:
        response = await client.post("/api/streams", json=start_body(stream_id) | change)
        assert assert_problem(response, 400, field)["errors"], change


async def test_missing_field_malformed_json_and_bad_path_are_400(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/api/streams", json={"width": 64, "height": 48}), 400, "stream_id")
    assert_problem(await client.post("/api/streams", content=b"{not json",
                                     headers={"content-type": "application/json"}), 400, "JSON")
    assert_problem(await client.get("/api/streams/not%20an%20id"), 400, "stream_id (in the path)")
    for body in (b'{"stream_id":"\xff\xfe"}', b'{"stream_id":"cam","x":' + b"[" * 5000 + b"]" * 5000 + b"}",
                 b"[" * 5000):
        assert_problem(await client.post("/api/streams", content=body,
                                         headers={"content-type": "application/json"}), 400, "JSON")
    assert_problem(await client.get("/api/events", headers={"Last-Event-ID": "x"}), 400, "Last-Event-ID")


# ----- the view: stats and MediaMTX ------------------------------------------------------------------


async def test_stream_json_carries_stats_and_mediamtx_readers(
    gateway: GatewayService, client: httpx.AsyncClient, mediamtx: FakeMediaMTX,
    store: StateStore, bus: Bus, stream_id: str,
) -> None:
    view = gateway.gateway.view
    await store.transition(stream_id, StreamState.REQUESTED, source=None)
    await store.transition(stream_id, StreamState.STARTING)
    await store.transition(stream_id, StreamState.PUBLISHING, encoder_id="enc-1", encoder_kind="libx264")
    assert await view.wait_for(lambda: stream_id in view.records, 5)
    stats = StreamStats(stream_id=stream_id, encoder_id="enc-1", encoder_kind="libx264", fps_out=29.5,
                        dropped=3, bitrate_kbps=812.0, restarts=1, at=time.time())
    await bus.publish(subjects.stats(stream_id), stats)
    assert await view.wait_for(lambda: stream_id in view.stats, 5)
    mediamtx.add_path(stream_id, profile="Main")
    mediamtx.add_reader(stream_id)
    await gateway.reconciler.poll()
    assert await view.wait_for(lambda: view.records[stream_id].state is StreamState.LIVE, 5)

    body = (await client.get(f"/api/streams/{stream_id}")).json()
    assert body["state"] == "live"
    assert body["reason"] == "MediaMTX is serving it (H264 Main, 1 reader)"
    assert (body["readers"], body["codec"], body["profile"], body["mediamtx"]) == (1, "H264", "Main", "ok")
    assert body["encoder_kind"] == "libx264"
    assert {k: body["stats"][k] for k in ("fps_out", "dropped", "bitrate_kbps", "restarts")} == {
        "fps_out": 29.5, "dropped": 3, "bitrate_kbps": 812.0, "restarts": 1}


async def test_camera_credentials_never_reach_the_api(
    gateway: GatewayService, client: httpx.AsyncClient, store: StateStore, stream_id: str
) -> None:
    view = gateway.gateway.view
    await store.transition(stream_id, StreamState.REQUESTED,
                           source=UrlSource(url="rtsp://admin:hunter2@cam.local:554/live?token=abc"))
    assert await view.wait_for(lambda: stream_id in view.records, 5)
    response = await client.get(f"/api/streams/{stream_id}")
    assert response.json()["source"] == {"kind": "url", "url": "rtsp://cam.local:554/live"}
    assert "hunter2" not in response.text and "abc" not in response.text


# ----- playback --------------------------------------------------------------------------------------


async def test_playback_gives_urls_and_a_viewer_token_for_the_stream(
    gateway: GatewayService, client: httpx.AsyncClient, store: StateStore, stream_id: str,
    token_issuer: tuple[TokenIssuer, list[TokenRequest]],
) -> None:
    view = gateway.gateway.view
    await store.transition(stream_id, StreamState.REQUESTED)
    assert await view.wait_for(lambda: stream_id in view.records, 5)
    response = await client.post(f"/api/streams/{stream_id}/playback")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"whep_url", "hls_url", "token", "expires_at", "expires_in", "mediamtx_node"}
    assert body["whep_url"] == f"http://127.0.0.1:8889/{stream_id}/whep"
    assert body["hls_url"] == f"http://127.0.0.1:8888/{stream_id}/index.m3u8"
    assert body["expires_at"] > time.time()
    assert 290 < body["expires_in"] <= 300, "counted from the answer: the default viewer token lasts 300 s"
    issuer, seen = token_issuer
    assert [(r.role, r.stream_id, r.subject) for r in seen] == [("viewer", stream_id, "api-key")]
    verified = TokenVerifier(issuer.keystore, "framecast-auth", "mediamtx").verify(body["token"])
    assert verified.grants("read", stream_id) and not verified.grants("publish", stream_id)


async def test_playback_without_the_auth_service_is_503(
    gateway: GatewayService, client: httpx.AsyncClient, store: StateStore, stream_id: str
) -> None:
    view = gateway.gateway.view
    await store.transition(stream_id, StreamState.REQUESTED)
    assert await view.wait_for(lambda: stream_id in view.records, 5)
    assert_problem(await client.post(f"/api/streams/{stream_id}/playback"), 503, "no auth service is answering")


# ----- authentication, public routes, probes -----------------------------------------------------------


async def test_api_needs_the_key(gateway: GatewayService) -> None:
    refused = [{}, {"Authorization": "Bearer wrong-key"}, {"Authorization": f"Basic {API_KEY}"},
               {"X-Api-Key": "wrong-key"}, {"Authorization": "Bearer"}]
    async with httpx.AsyncClient(base_url=gateway.url) as anonymous:
        for headers in refused:
            for method, path in (("GET", "/api/streams"), ("GET", "/api/streams/x"), ("POST", "/api/streams"),
                                 ("DELETE", "/api/streams/x"), ("POST", "/api/streams/x/playback"),
                                 ("GET", "/api/events")):
                response = await anonymous.request(method, path, headers=headers)
                assert_problem(response, 401)
                assert response.headers["www-authenticate"].startswith('Bearer realm="framecast"')
                assert API_KEY not in response.text


async def test_api_key_header_is_accepted(gateway: GatewayService) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        assert (await http.get("/api/streams", headers={"X-Api-Key": API_KEY})).status_code == 200


async def test_player_schema_and_probes_are_public(gateway: GatewayService) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        index = await http.get("/")
        assert index.status_code == 200 and "streams.js" in index.text
        for path in ("/watch.html", "/style.css", "/static/watch.html", "/static/api.js"):
            assert (await http.get(path)).status_code == 200, path
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200
        assert ready.json() == {"status": "ready", "nats": "connected", "state": "loaded",
                                "mediamtx": ready.json()["mediamtx"], "detail": ""}
        schema = (await http.get("/schema/openapi.json")).json()
        assert {"/api/streams", "/api/streams/{stream_id}", "/api/streams/{stream_id}/playback",
                "/api/events", "/healthz", "/readyz"} <= schema["paths"].keys()
        assert {"bearer", "apiKey"} <= schema["components"]["securitySchemes"].keys()
        assert_problem(await http.get("/no/such/page"), 404)


async def test_readyz_reports_an_unreachable_mediamtx_without_failing(
    nats_server: NatsServer, free_port: int
) -> None:
    settings = GatewaySettings(nats_url=nats_server.url, gateway_addr="127.0.0.1:0", gateway_api_key=API_KEY,
                               mediamtx_api=f"http://127.0.0.1:{free_port}")
    async with lifespan(Runtime("gateway", settings, "gateway-test")) as service:
        view = service.gateway.view
        assert await view.wait_for(lambda: view.loaded, 10)
        await service.reconciler.poll()
        async with httpx.AsyncClient(base_url=service.url) as http:
            ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["mediamtx"] == "unreachable" and "unreachable" in ready.json()["detail"]


# ----- tracing -------------------------------------------------------------------------------------------


async def test_request_span_is_named_after_the_route_and_parents_the_nats_request(
    spans: InMemorySpanExporter, client: httpx.AsyncClient, stream_id: str
) -> None:
    spans.clear()
    await client.post("/api/streams", json=start_body(stream_id))  # 503: nobody answers, still traced
    await client.get(f"/api/streams/{stream_id}")
    finished = spans.get_finished_spans()
    server = {s.name: s for s in finished if s.kind is SpanKind.SERVER}
    assert {"POST /api/streams", "GET /api/streams/{stream_id}"} <= server.keys()
    assert server["GET /api/streams/{stream_id}"].attributes["http.route"] == "/api/streams/{stream_id}"
    nats_request = next(s for s in finished if s.name == f"send {subjects.STREAM_START}")
    assert nats_request.parent is not None
    assert nats_request.context.trace_id == server["POST /api/streams"].context.trace_id
    assert nats_request.parent.span_id == server["POST /api/streams"].context.span_id


# ----- the error mapping ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("error", "status"), [
    (RequestRejected(subjects.STREAM_START, "bad_request", "no such file"), 400),
    (RequestRejected(subjects.STREAM_START, "forbidden", "not yours"), 403),
    (RequestRejected(subjects.STREAM_STOP, "not_found", "no stream x"), 404),
    (RequestRejected(subjects.STREAM_START, "conflict", "already live"), 409),
    (RequestRejected(subjects.STREAM_START, "unavailable", "at its limit"), 503),
    (RequestRejected(subjects.STREAM_START, "internal", "internal error; see the service log"), 502),
    (RequestTimedOut(subjects.AUTH_TOKEN_ISSUE, "auth", 2.0), 503),
    (nats.errors.ConnectionReconnectingError(), 503),
])
def test_bus_errors_map_to_statuses_with_their_message(error: Exception, status: int) -> None:
    answer = problem_for(error)
    assert answer.problem.status == status
    if isinstance(error, RequestRejected):
        assert answer.problem.detail == error.message
    if isinstance(error, RequestTimedOut):
        assert "the auth service did not answer" in answer.problem.detail


class Broken(Authenticator):
    async def authenticate(self, headers: Mapping[str, str]) -> Viewer:
        raise RuntimeError("secret internals at /srv/gateway/viewers.py line 3")


async def test_an_unexpected_error_is_a_500_problem_without_internals(
    gateway: GatewayService, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(dataclasses.replace(gateway.gateway, authenticator=Broken()))
    async with serve_asgi(app) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.get("/api/streams")
    assert_problem(response, 500, "details are in its log")
    assert "secret" not in response.text and "RuntimeError" not in response.text
    assert any(r.name == "framecast.gateway.app" and r.exc_info for r in caplog.records)  # in the log only

"""The HTTP seams every service shares: the probes' one format, problem documents, instruments made once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar, get, post
from litestar.params import JSONBody
from litestar.testing import AsyncTestClient
from opentelemetry import metrics

from framecast.runtime.health import Health, health_routes, readiness
from framecast.runtime.lifecycle import Runtime, serve
from framecast.runtime.problems import answer, exception_handler, problem_answer
from framecast.runtime.settings import CommonSettings
from framecast.runtime.telemetry import instruments
from tests.support.services import eventually

log = logging.getLogger("framecast.test.http")


class Teapot(Exception):
    pass


def app(ready: list[bool]) -> Litestar:
    @get("/boom", sync_to_thread=False)
    def boom() -> None:
        raise RuntimeError("secret internals at /srv/x.py line 3")

    @get("/teapot", sync_to_thread=False)
    def teapot() -> None:
        raise Teapot

    @post("/numbers", sync_to_thread=False)
    def numbers(data: JSONBody[dict[str, int]]) -> dict[str, int]:
        return data

    domain = lambda exc: answer(418, "short and stout") if isinstance(exc, Teapot) else None  # noqa: E731
    return Litestar(
        [boom, teapot, numbers, *health_routes(lambda: readiness(ready[0], "warming up"))],
        exception_handlers={Exception: exception_handler(service="test service", log=log, domain=domain)},
        logging_config=None,
    )


def assert_problem(response: httpx.Response, status: int, detail: str) -> None:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {"type": "about:blank", "title": response.json()["title"], "status": status,
                               "detail": detail}


async def test_litestar_probes_answer_the_one_format() -> None:
    ready = [False]
    async with AsyncTestClient(app(ready)) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        not_ready = await client.get("/readyz")
        assert (not_ready.status_code, not_ready.json()) == (503, {"status": "not ready", "detail": "warming up"})
        ready[0] = True
        ok = await client.get("/readyz")
        assert (ok.status_code, ok.json()) == (200, {"status": "ready"})


async def test_errors_are_problems_and_internals_stay_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    async with AsyncTestClient(app([True])) as client:
        assert_problem(await client.get("/teapot"), 418, "short and stout")
        assert_problem(await client.get("/nowhere"), 404, "Not Found")
        assert (await client.post("/healthz")).status_code == 405
        invalid = await client.post("/numbers", json={"a": "one"})
        assert invalid.status_code == 400 and invalid.json()["errors"]
        failed = await client.get("/boom")
    assert_problem(failed, 500, "the test service failed to handle this request; the details are in its log")
    assert "secret" not in failed.text
    assert any(r.name == log.name and r.exc_info for r in caplog.records)


def test_an_unknown_error_maps_to_500_without_a_domain() -> None:
    assert problem_answer(ValueError("x"), service="gateway").problem.status == 500


@contextlib.asynccontextmanager
async def idle(runtime: Runtime[CommonSettings]) -> AsyncIterator[None]:
    yield


async def test_the_raw_socket_probes_answer_the_same_format(free_port: int) -> None:
    runtime = Runtime("probe", CommonSettings(health_addr=f"127.0.0.1:{free_port}"), "probe-1")
    served = asyncio.create_task(serve(runtime, idle, handle_signals=False))
    url = f"http://127.0.0.1:{free_port}"
    try:
        async with httpx.AsyncClient(base_url=url) as client:
            await eventually(lambda: runtime.ready, "the probe service ready", 2)
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            ready = await client.get("/readyz")
            assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
            runtime.ready = False
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json() == {"status": "not ready", "detail": "probe is starting or stopping"}
            assert_problem(await client.get("/metrics"), 404, "the probes are /healthz and /readyz")
    finally:
        runtime.request_stop()
        assert await asyncio.wait_for(served, 10) == 0


def test_health_subclasses_add_fields() -> None:
    class Extra(Health, kw_only=True, omit_defaults=False):
        nats: str

    assert msgspec.json.decode(msgspec.json.encode(Extra(status="ready", nats="connected")), type=dict[str, Any]) == {
        "status": "ready", "detail": "", "nats": "connected"}


def test_instruments_are_made_once_per_process() -> None:
    made: list[metrics.Meter] = []

    def create(meter: metrics.Meter) -> metrics.Counter:
        made.append(meter)
        return meter.create_counter("framecast.test.things")

    things = instruments("framecast.test", create)
    assert things() is things()
    assert len(made) == 1

"""Property-based tests of the served OpenAPI schema with schemathesis, against a real gateway process.

The gateway runs as ``python -m framecast.gateway`` (so the CLI, settings and runtime are the
real ones) on a real nats-server, with no capture or auth service and MediaMTX unreachable:
start, stop and playback then answer 503, which the schema documents. Every answer must match
the schema, and none may be a 500/502 or an error that is not a problem document.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure
from schemathesis.generation import GenerationMode

from framecast.devstack.nats import NatsServer

API_KEY = "schemathesis-" + "k" * 20
READY_TIMEOUT_S = 20
EXAMPLES = 150


class GatewayProcess:
    """``python -m framecast.gateway``, its standard error drained and searched by a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.lines: list[str] = []
        self.listening = threading.Event()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "framecast.gateway"], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)
            if "gateway ready" in line:
                self.listening.set()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


@pytest.fixture
def gateway_url(nats_server: NatsServer, free_port: int) -> Iterator[str]:
    env = os.environ | {
        "FRAMECAST_NATS_URL": nats_server.url,
        "FRAMECAST_GATEWAY_ADDR": f"127.0.0.1:{free_port}",
        "FRAMECAST_GATEWAY_API_KEY": API_KEY,
        "FRAMECAST_MEDIAMTX_API": "http://127.0.0.1:9",
        "FRAMECAST_GATEWAY_REQUEST_TIMEOUT_S": "0.5",
        "FRAMECAST_LOG_FORMAT": "text",
    }
    gateway = GatewayProcess(env)
    try:
        if not gateway.listening.wait(READY_TIMEOUT_S):
            pytest.fail("the gateway did not start:\n" + "".join(gateway.lines[-20:]))
        yield f"http://127.0.0.1:{free_port}"
    finally:
        gateway.stop()
    assert not any("Traceback" in line for line in gateway.lines), "".join(gateway.lines)


@schemathesis.check
def errors_are_problems(ctx: object, response: schemathesis.Response, case: schemathesis.Case) -> bool:
    """5xx only as a documented 503 (a service this needs is down); every error a problem document."""
    if response.status_code >= 500 and response.status_code != 503:
        raise Failure(operation=case.operation.label, title=f"server error {response.status_code}",
                      message=response.text[:500])
    if response.status_code >= 400:
        problem = response.json()
        if response.headers.get("content-type", [""])[0] != "application/problem+json" or not (
            {"type", "title", "status", "detail"} <= problem.keys()
        ):
            raise Failure(operation=case.operation.label, title="error without problem details",
                          message=response.text[:500])
    return True


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_matches_the_schema(gateway_url: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{gateway_url}/schema/openapi.json")
    operations = schema.exclude(path="/api/events")  # an endless stream: see test_api_events

    @given(case=operations.as_strategy(mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def answer_matches(case: schemathesis.Case) -> None:
        case.call_and_validate(
            headers={"Authorization": f"Bearer {API_KEY}", "X-Api-Key": API_KEY},
            excluded_checks=[not_a_server_error],
            additional_checks=[errors_are_problems],
        )

    answer_matches()

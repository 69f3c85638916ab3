"""``python -m bench.auth_hook``: what one auth decision costs, and how many the hook serves.

Why: MediaMTX asks the hook about every publish, read and control-API call, over a new TCP
connection each time, and takes publish/read decisions one at a time in its path manager
(docs/mediamtx.md, "Auth hook"): the hook's latency bounds how fast viewers can join. Measured:

- decisions/s, p50/p99 latency and server CPU per decision of ``POST /mediamtx/auth`` under
  load from a second process: an asyncio generator speaking raw HTTP/1.1 (far cheaper than an
  HTTP library, so the client takes less of the 2 cores), with a bounded number of concurrent
  connections and, as MediaMTX does, a fresh connection per call unless a row says keep-alive;
  bounded by time and by a request count;
- the service's app served by uvicorn with 1 and 2 worker processes (uvicorn ``--workers``
  with an app factory: the workers share one listening socket), side by side with a bare
  Litestar route on the same server (``POST /bare``, answers 200), the framework's floor;
- payloads: a valid viewer token reading its path (allow), a viewer token of another path
  (deny after verifying), the empty first attempt of an RTSP client (deny without verifying);
- in-process, the sign and verify cost and token length of each algorithm MediaMTX accepts
  from pyjwt (HS256, RS256, ES256, EdDSA), and of framecast's own issuer and verifier.

The server is wired as ``service.lifespan`` wires it: the key store, verifier, failure limiter,
every decision published to a local nats-server, JSON logs at info level (sent to a file).
Every request comes from its own client IP (10.x.y.z), so the failure limiter never blocks
the generator. No assertions: figures and ratios, printed and written to JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import itertools
import json
import os
import resource
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import timeit
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from litestar import Litestar, Response, get, post

from bench import procs, report
from framecast.auth import (
    AuthService,
    AuthSettings,
    FailureLimiter,
    KeyStore,
    TokenIssuer,
    TokenVerifier,
    create_app,
)
from framecast.devstack.nats import find_nats_server
from framecast.proto.bus import Bus
from framecast.proto.messages import AuthDecision
from framecast.runtime import logs
from framecast.runtime.lifecycle import Runtime
from framecast.runtime.settings import load

GROUP = "auth_hook"
ROOT = Path(__file__).resolve().parent.parent
PATH = "cam1"
SESSION_ID = "0d6f3c2a-8b1e-4f5a-9c7d-2e4b6a8c0d1f"
TOKEN_TTL_S = 3600
IP_SLOT = "10.%d.%d.%d"
PAYLOADS = ("bare", "allow", "wrong path", "no credentials")


# ----- the server: the auth app as the service wires it, plus a bare route ------------------------


def bench_app() -> Litestar:
    """uvicorn's app factory, called once per worker: ``create_app`` wired as ``service.lifespan``
    wires it (settings from FRAMECAST_* variables), plus ``POST /bare`` and ``GET /pid``."""
    settings = load(AuthSettings)
    runtime = Runtime("auth", settings)
    logs.configure("auth", runtime.instance, settings.log_level, "json")
    keystore = KeyStore(Path(settings.auth_key_dir))
    verifier = TokenVerifier(keystore, settings.auth_issuer, settings.auth_audience)
    services: list[AuthService] = []

    def audit(decision: AuthDecision) -> None:
        services[0].audit(decision)

    async def connect() -> None:
        bus = await Bus.connect(settings.nats_url, client_id=runtime.instance)
        services.append(AuthService(runtime, bus, keystore))

    async def disconnect() -> None:
        await services[0].bus.close()

    @post("/bare", status_code=200, sync_to_thread=False)
    def bare() -> Response[bytes]:
        return Response(b"", media_type="text/plain")

    @get("/pid", sync_to_thread=False)
    def pid() -> Response[bytes]:
        return Response(str(os.getpid()).encode(), media_type="text/plain")

    app = create_app(keystore, verifier, frozenset[str]().__contains__, audit, FailureLimiter())
    app.on_startup.append(connect)
    app.on_shutdown.append(disconnect)
    app.register(bare)
    app.register(pid)
    return app


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """``bench_app`` under uvicorn in its own process group; ``pids`` are its worker processes."""

    def __init__(self, workers: int, env: dict[str, str], log_path: Path) -> None:
        self.workers = workers
        self.port = _free_port()
        self._log = log_path.open("wb")
        self.proc = procs.spawn(
            [sys.executable, "-m", "uvicorn", "bench.auth_hook:bench_app", "--factory",
             "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers), "--lifespan", "on",
             "--log-level", "warning", "--no-access-log", "--no-server-header"],
            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
        )
        self.log_path = log_path
        self.pids = self._wait_for_workers()

    def _wait_for_workers(self, timeout: float = 60.0) -> list[int]:
        """Ask ``GET /pid`` on fresh connections until every worker has answered once."""
        seen: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(seen) < self.workers:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"uvicorn with {self.workers} worker(s) did not start:\n{tail}")
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                connection.request("GET", "/pid")
                seen.add(int(connection.getresponse().read()))
            except (OSError, ValueError, http.client.HTTPException):
                time.sleep(0.1)
            finally:
                connection.close()
        return sorted(seen)

    def stop(self) -> None:
        procs.stop(self.proc, grace=0.0)  # SIGTERM at once: uvicorn shuts down gracefully on it
        self._log.close()


# ----- the load generator (a second process) -------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """One row's load: what is sent, how many at once, for how long."""

    port: int
    route: str
    body: str
    """The JSON body with ``IP_SLOT`` where the client IP goes (each request gets its own)."""
    concurrency: int
    fresh: bool
    """A new TCP connection per request, closed after the answer (MediaMTX's way)."""
    warmup_s: float
    duration_s: float
    max_requests: int
    server_pids: tuple[int, ...]


def _request(load: Load) -> Callable[[int], bytes]:
    head = (f"POST {load.route} HTTP/1.1\r\nHost: 127.0.0.1:{load.port}\r\nUser-Agent: Go-http-client/1.1\r\n"
            "Content-Length: %d\r\nContent-Type: application/json\r\nAccept-Encoding: gzip\r\n\r\n").encode()
    body = load.body.encode()

    def build(n: int) -> bytes:
        payload = body % (n >> 16 & 255, n >> 8 & 255, n & 255)
        return head % len(payload) + payload

    return build


async def _read_status(reader: asyncio.StreamReader) -> int:
    """The status of one HTTP/1.1 response, its headers and body consumed."""
    line = await reader.readline()
    if not line:
        raise ConnectionResetError("closed by the server")
    length = 0
    while (header := await reader.readline()) not in (b"\r\n", b""):
        if header[:15].lower() == b"content-length:":
            length = int(header[15:])
    if length:
        await reader.readexactly(length)
    return int(line.split()[1])


async def generate(load: Load) -> dict[str, Any]:
    """Send ``load`` until its time or request count is spent; figures of the measured window."""
    build = _request(load)
    numbers = itertools.count(1)
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + load.warmup_s
    end = measure_from + load.duration_s
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    last_done = measure_from

    async def client() -> None:
        nonlocal errors, last_done
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while (began := loop.time()) < end and (n := next(numbers)) <= load.max_requests:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", load.port)
                assert reader is not None
                writer.write(build(n))
                status = await _read_status(reader)
            except (OSError, ValueError, asyncio.IncompleteReadError):
                status = 0
                if began >= measure_from:
                    errors += 1
            done = loop.time()
            if began >= measure_from and status:
                latencies.append(done - began)
                statuses[status] += 1
                last_done = max(last_done, done)
            if writer is not None and (load.fresh or not status):
                writer.close()
                reader = writer = None
        if writer is not None:
            writer.close()

    async def sample_cpu() -> tuple[float, float]:
        await asyncio.sleep(max(0.0, measure_from - loop.time()))
        return sum(procs.cpu_seconds(pid) for pid in load.server_pids), _own_cpu()

    sampling = asyncio.create_task(sample_cpu())
    await asyncio.gather(*(client() for _ in range(load.concurrency)))
    server_before, client_before = await sampling
    server_cpu = sum(procs.cpu_seconds(pid) for pid in load.server_pids) - server_before
    client_cpu = _own_cpu() - client_before
    span = max(last_done - measure_from, 1e-9)
    count = len(latencies)
    return {
        "decisions": count,
        "decisions_per_s": count / span,
        "p50_ms": report.percentile(latencies, 50) * 1e3,
        "p99_ms": report.percentile(latencies, 99) * 1e3,
        "errors": errors,
        "statuses": {str(code): n for code, n in sorted(statuses.items())},
        "window_s": span,
        "server_cpu_us_per_decision": server_cpu / count * 1e6 if count else float("nan"),
        "server_cores_busy": server_cpu / span,
        "client_cores_busy": client_cpu / span,
    }


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def generator_main() -> None:
    """The generator process: one ``Load`` (JSON) per line in, its figures (JSON) per line out."""
    for line in sys.stdin:
        fields = json.loads(line)
        result = asyncio.run(generate(Load(**{**fields, "server_pids": tuple(fields["server_pids"])})))
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


class Generator:
    """The load generator process, started once and fed one row at a time."""

    def __init__(self) -> None:
        self.proc = procs.spawn(
            [sys.executable, "-c", "from bench.auth_hook import generator_main; generator_main()"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )

    def run(self, load: Load) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(asdict(load)).encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the load generator died")
        result: dict[str, Any] = json.loads(line)
        return result

    def stop(self) -> None:
        procs.stop(self.proc)


# ----- the rows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    workers: int
    payload: str
    concurrency: int = 8
    fresh: bool = True

    @property
    def connection(self) -> str:
        return "fresh" if self.fresh else "keep-alive"


ROWS = (
    *(Row(1, payload) for payload in PAYLOADS),
    Row(1, "allow", concurrency=1),
    Row(1, "bare", fresh=False),
    Row(1, "allow", fresh=False),
    *(Row(2, payload) for payload in PAYLOADS),
)
"""Each payload with 1 and 2 workers over fresh connections; then, with 1 worker, MediaMTX's
serialized path manager (one call at a time) and what keep-alive would save."""


def hook_bodies(issuer: TokenIssuer) -> dict[str, str]:
    """Each payload's hook body as MediaMTX v1.20 sends it (docs/mediamtx.md, "Auth hook"), client IP left open."""
    viewer = issuer.issue_viewer(PATH, "bench-viewer", TOKEN_TTL_S).token
    stranger = issuer.issue_viewer("cam2", "bench-viewer", TOKEN_TTL_S).token

    def body(protocol: str, token: str, user_agent: str, session: str | None) -> str:
        fields = {"ip": "IP", "user": "", "password": "", "token": token, "action": "read", "path": PATH,
                  "protocol": protocol, "id": session, "query": "", "userAgent": user_agent}
        return json.dumps(fields, separators=(",", ":")).replace('"IP"', f'"{IP_SLOT}"')

    allow = body("webrtc", viewer, "Mozilla/5.0", SESSION_ID)
    return {
        "bare": allow,
        "allow": allow,
        "wrong path": body("webrtc", stranger, "Mozilla/5.0", SESSION_ID),
        "no credentials": body("rtsp", "", "", SESSION_ID),
    }


def measure_hook(quick: bool, progress: Callable[[str], None]) -> list[dict[str, Any]]:
    warmup_s, duration_s, max_requests = (0.2, 0.6, 20_000) if quick else (1.0, 7.0, 200_000)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="framecast-bench-auth-") as tmp:
        issuer = TokenIssuer(KeyStore(Path(tmp) / "keys"), "framecast", "mediamtx")
        bodies = hook_bodies(issuer)
        nats_port = _free_port()
        nats = procs.spawn([find_nats_server(), "-a", "127.0.0.1", "-p", str(nats_port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env = dict(os.environ, FRAMECAST_AUTH_KEY_DIR=str(Path(tmp) / "keys"),
                   FRAMECAST_NATS_URL=f"nats://127.0.0.1:{nats_port}", FRAMECAST_LOG_LEVEL="info")
        generator = Generator()
        try:
            for workers in sorted({row.workers for row in ROWS}):
                server = Server(workers, env, Path(tmp) / f"uvicorn-{workers}.log")
                try:
                    for row in (r for r in ROWS if r.workers == workers):
                        load = Load(port=server.port, route="/bare" if row.payload == "bare" else "/mediamtx/auth",
                                    body=bodies[row.payload], concurrency=row.concurrency, fresh=row.fresh,
                                    warmup_s=warmup_s, duration_s=duration_s, max_requests=max_requests,
                                    server_pids=tuple(server.pids))
                        figures = generator.run(load)
                        results.append({**asdict(row), "connection": row.connection, **figures})
                        progress(f"{workers} worker(s), {row.payload}, c={row.concurrency}, {row.connection}: "
                                 f"{figures['decisions_per_s']:,.0f}/s")
                finally:
                    server.stop()
        finally:
            generator.stop()
            procs.stop(nats, grace=0.0)
    return results


# ----- JWT sign/verify cost, in-process ------------------------------------------------------------


def _claims() -> dict[str, Any]:
    """A viewer token's claims as TokenIssuer writes them, for a 64-character stream id."""
    now = int(time.time())
    path = "s" * 64
    return {"iss": "framecast", "aud": "mediamtx", "sub": "viewer:" + path, "iat": now, "nbf": now - 30,
            "exp": now + 300, "jti": secrets.token_urlsafe(9),
            "mediamtx_permissions": [{"action": "read", "path": path}, {"action": "playback", "path": path}]}


def _per_call_us(call: Callable[[], object], calls: int, repeat: int) -> float:
    return report.median([t / calls * 1e6 for t in timeit.repeat(call, number=calls, repeat=repeat)])


def measure_jwt(quick: bool) -> list[dict[str, Any]]:
    calls, repeat = (300, 3) if quick else (3000, 5)
    claims = _claims()
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    secret = secrets.token_bytes(32)
    keys: dict[str, tuple[Any, Any]] = {
        "HS256": (secret, secret),
        "RS256": (rsa_key, rsa_key.public_key()),
        "ES256": (ec_key, ec_key.public_key()),
        "EdDSA": (ed_key, ed_key.public_key()),
    }
    rows = []
    for alg, (private, public) in keys.items():
        token = jwt.encode(claims, private, algorithm=alg, headers={"kid": "k" * 43})

        def sign(private: Any = private, alg: str = alg) -> str:
            return jwt.encode(claims, private, algorithm=alg, headers={"kid": "k" * 43})

        def verify(public: Any = public, alg: str = alg, token: str = token) -> object:
            return jwt.decode(token, public, algorithms=[alg], audience="mediamtx", issuer="framecast")

        rows.append({"algorithm": alg, "implementation": "pyjwt encode/decode",
                     "sign_us": _per_call_us(sign, calls, repeat), "verify_us": _per_call_us(verify, calls, repeat),
                     "token_bytes": len(token)})
    with tempfile.TemporaryDirectory(prefix="framecast-bench-jwt-") as tmp:
        keystore = KeyStore(Path(tmp))
        issuer = TokenIssuer(keystore, "framecast", "mediamtx")
        verifier = TokenVerifier(keystore, "framecast", "mediamtx")
        token = issuer.issue_viewer("s" * 64, "viewer", 300).token
        rows.append({"algorithm": "ES256", "implementation": "framecast TokenIssuer/TokenVerifier",
                     "sign_us": _per_call_us(lambda: issuer.issue_viewer("s" * 64, "viewer", 300), calls, repeat),
                     "verify_us": _per_call_us(lambda: verifier.verify(token), calls, repeat),
                     "token_bytes": len(token)})
    return rows


# ----- report ------------------------------------------------------------------------------------


def _find(rows: Sequence[dict[str, Any]], workers: int, payload: str, concurrency: int = 8,
          connection: str = "fresh") -> dict[str, Any]:
    return next(r for r in rows if (r["workers"], r["payload"], r["concurrency"], r["connection"])
                == (workers, payload, concurrency, connection))


def ratios(rows: Sequence[dict[str, Any]], jwt_rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    def rate(*key: Any) -> float:
        return float(_find(rows, *key)["decisions_per_s"])

    def cpu(*key: Any) -> float:
        return float(_find(rows, *key)["server_cpu_us_per_decision"])

    es256 = next(r for r in jwt_rows if r["algorithm"] == "ES256" and r["implementation"].startswith("pyjwt"))
    out = {
        "allow_vs_bare_rate": rate(1, "allow") / rate(1, "bare"),
        "hook_share_of_server_cpu_allow": 1 - cpu(1, "bare") / cpu(1, "allow"),
        "no_credentials_vs_allow_rate": rate(1, "no credentials") / rate(1, "allow"),
        "two_vs_one_worker_allow_rate": rate(2, "allow") / rate(1, "allow"),
        "two_vs_one_worker_bare_rate": rate(2, "bare") / rate(1, "bare"),
        "keepalive_vs_fresh_allow_rate": rate(1, "allow", 8, "keep-alive") / rate(1, "allow"),
        "serial_allow_rate_vs_concurrent": rate(1, "allow", 1) / rate(1, "allow"),
    }
    for row in jwt_rows:
        if row["implementation"].startswith("pyjwt") and row is not es256:
            out[f"{row['algorithm']}_verify_vs_ES256"] = row["verify_us"] / es256["verify_us"]
    return out


def render(rows: Sequence[dict[str, Any]], jwt_rows: Sequence[dict[str, Any]], ratio: dict[str, float]) -> str:
    hook = report.table(
        ["workers", "payload", "conc.", "connection", "decisions/s", "p50 ms", "p99 ms", "server CPU us/dec",
         "server cores", "client cores", "errors", "statuses"],
        [[r["workers"], r["payload"], r["concurrency"], r["connection"], r["decisions_per_s"], r["p50_ms"],
          r["p99_ms"], r["server_cpu_us_per_decision"], r["server_cores_busy"], r["client_cores_busy"],
          r["errors"], " ".join(f"{k}:{v}" for k, v in r["statuses"].items())] for r in rows],
        title="MediaMTX auth hook over loopback (uvicorn, h11; load from a second process)",
    )
    tokens = report.table(
        ["algorithm", "implementation", "sign us", "verify us", "token bytes"],
        [[r["algorithm"], r["implementation"], r["sign_us"], r["verify_us"], r["token_bytes"]] for r in jwt_rows],
        title="JWT cost per call, in-process (median of repeats)",
    )
    lines = [f"{name}: {value:.2f}" for name, value in ratio.items()]
    return "\n\n".join([hook, tokens, "ratios\n" + "\n".join(lines)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.auth_hook",
        description="Auth hook decisions/s and latency under load (1 and 2 uvicorn workers, beside a bare "
                    "Litestar route), and JWT sign/verify cost per algorithm. Figures, no assertions.",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of about 15 s (default: about 2 min)")
    parser.add_argument("--results", type=Path, default=None, metavar="DIR",
                        help=f"where {GROUP}.json is written (default: bench/results; a --quick run writes "
                             "nothing unless this is given)")
    parser.add_argument("--no-save", action="store_true", help="print only; write no JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = parser.parse_args(argv)
    began = time.monotonic()

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - began:6.1f} s] {message}", file=sys.stderr, flush=True)

    env = report.environment()
    print(f"environment: {report.describe(env)}", flush=True)
    try:
        rows = measure_hook(args.quick, progress)
        progress("hook rows done; timing JWT algorithms")
        jwt_rows = measure_jwt(args.quick)
    except KeyboardInterrupt:
        print("\ninterrupted; children stopped", file=sys.stderr)
        return 130
    ratio = ratios(rows, jwt_rows)
    table = render(rows, jwt_rows, ratio)
    print(f"\n{table}\n", flush=True)
    result = {"rows": rows, "jwt": jwt_rows, "ratios": ratio, "table": table, "environment": env,
              "server": "uvicorn (h11, asyncio loop), Litestar, audit to a local nats-server, JSON logs at info",
              "elapsed_s": time.monotonic() - began, "quick": args.quick, "load_average_after": os.getloadavg()}
    report.save_standalone(GROUP, result, quick=args.quick, results=args.results, no_save=args.no_save)
    return 0


if __name__ == "__main__":
    sys.exit(main())

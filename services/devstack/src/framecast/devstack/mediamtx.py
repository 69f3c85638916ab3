"""Finding, configuring and installing MediaMTX for the dev stack.

MediaMTX is an external Go binary; framecast never re-implements it. The dev stack looks for
it on PATH, in FRAMECAST_MEDIAMTX_BIN, or in the cache that ``framecast mediamtx install``
fills with the pinned release after checking it against the release's published checksums.
"""

from __future__ import annotations

import hashlib
import io
import os
import platform
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from framecast.auth.hook import RELAY_USER

VERSION = "v1.20.1"
RELEASES = "https://github.com/bluenviron/mediamtx/releases/download"
INSTALL_HINT = "framecast mediamtx install"


class MediaMTXInstallError(Exception):
    pass


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "framecast" / "mediamtx" / VERSION


def find_mediamtx() -> str | None:
    """FRAMECAST_MEDIAMTX_BIN, then ``mediamtx`` on PATH, then the install cache."""
    if configured := os.environ.get("FRAMECAST_MEDIAMTX_BIN"):
        return configured if os.access(configured, os.X_OK) else None
    if found := shutil.which("mediamtx"):
        return found
    cached = cache_dir() / "mediamtx"
    return str(cached) if os.access(cached, os.X_OK) else None


def _asset() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "armv7"}.get(machine)
    system = platform.system().lower()
    if arch is None or system not in ("linux", "darwin"):
        raise MediaMTXInstallError(f"no MediaMTX release for {system}/{machine}; install it by hand and set "
                                   "FRAMECAST_MEDIAMTX_BIN")
    return f"mediamtx_{VERSION}_{system}_{arch}.tar.gz"


Progress = Callable[[int, int], None]
"""``progress(done, total)`` in bytes; ``total`` is 0 when the server does not say."""


def releases_url() -> str:
    """Where releases are downloaded from: FRAMECAST_MEDIAMTX_RELEASES (a mirror) or GitHub."""
    return os.environ.get("FRAMECAST_MEDIAMTX_RELEASES", "").rstrip("/") or RELEASES


def _download(url: str, progress: Progress | None = None) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - http(s) release host
            total = int(response.headers.get("Content-Length") or 0)
            chunks, done = [], 0
            while chunk := response.read(1 << 16):
                chunks.append(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
            return b"".join(chunks)
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise MediaMTXInstallError(f"could not download {url}: {reason}") from None


def install(releases: str | None = None, progress: Progress | None = None) -> Path:
    """Download the pinned release, verify its SHA-256 against the published checksums, unpack."""
    releases = releases or releases_url()
    asset = _asset()
    sums = _download(f"{releases}/{VERSION}/checksums.sha256").decode(errors="replace")
    expected = next((line.split()[0] for line in sums.splitlines() if line.strip().endswith(asset)), None)
    if expected is None:
        raise MediaMTXInstallError(f"{asset} is not listed in the release's checksums.sha256")
    archive = _download(f"{releases}/{VERSION}/{asset}", progress)
    actual = hashlib.sha256(archive).hexdigest()
    if actual != expected:
        raise MediaMTXInstallError(f"checksum mismatch for {asset}: expected {expected}, got {actual}")
    target = cache_dir()
    target.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            source = tar.extractfile(tar.getmember("mediamtx"))
            if source is None:
                raise KeyError("mediamtx")
            partial = target / "mediamtx.partial"
            partial.write_bytes(source.read())
    except (KeyError, tarfile.TarError) as exc:
        raise MediaMTXInstallError(f"{asset} holds no mediamtx binary ({exc})") from None
    partial.chmod(0o755)
    binary = target / "mediamtx"
    partial.replace(binary)  # never a half-written binary where find_mediamtx looks
    return binary


class ProgressBar:
    """A download's progress on a terminal (one line redrawn), or a line per quarter elsewhere."""

    def __init__(self, out: TextIO, label: str) -> None:
        self.out, self.label = out, label
        self.tty = out.isatty()
        self._shown = -1

    def __call__(self, done: int, total: int) -> None:
        percent = done * 100 // total if total else 0
        step = percent if self.tty else percent // 25 * 25
        if step == self._shown:
            return
        self._shown = step
        bar = "#" * (percent // 4)
        line = f"  {self.label} [{bar:<25}] {percent:3d}% {done / 1e6:.1f}/{total / 1e6:.1f} MB"
        if self.tty:
            self.out.write("\r" + line + ("\n" if done >= total else ""))
        else:
            self.out.write(line + "\n")
        self.out.flush()


def config(*, auth_url: str, rtsp_port: int = 8554, api_port: int = 9997, whep_port: int = 8889,
           hls_port: int = 8888, webrtc_udp_port: int = 8189, hls_variant: str = "fmp4",
           jwks_url: str | None = None, issuer: str = "framecast", audience: str = "mediamtx",
           origin: str | None = None) -> str:
    """A MediaMTX config for local development on loopback. Every access is decided by
    framecast's auth hook at ``auth_url``; with ``jwks_url``, MediaMTX verifies framecast's
    JWTs itself against that JWKS instead (``authMethod: jwt``, docs/mediamtx.md "JWT").

    With ``origin`` (an RTSP base, ``rtsp://host:port``) the node is an edge, as
    deploy/mediamtx/mediamtx-edge.yml makes one: it takes no publisher and pulls each stream from
    the origin when its first viewer asks. The source written here names no credentials, so the
    origin refuses it until MTX_PATHDEFAULTS_SOURCE gives the real one (``edge_source``)."""
    if jwks_url is None:
        auth = f"""authMethod: http
authHTTPAddress: {auth_url}
authHTTPExclude: []"""
    else:
        auth = f"""authMethod: jwt
authJWTJWKS: {jwks_url}
authJWTClaimKey: mediamtx_permissions
authJWTIssuer: {issuer}
authJWTAudience: {audience}
authJWTExclude: []"""
    return f"""# Written by framecast: MediaMTX on loopback, every access decided by framecast auth.
logLevel: info
{auth}
api: yes
apiAddress: 127.0.0.1:{api_port}
rtsp: yes
rtspTransports: [tcp]
rtspAddress: 127.0.0.1:{rtsp_port}
rtmp: no
srt: no
moq: no
hls: yes
hlsAddress: 127.0.0.1:{hls_port}
hlsVariant: {hls_variant}
hlsSegmentDuration: 1s
webrtc: yes
webrtcAddress: 127.0.0.1:{whep_port}
webrtcLocalUDPAddress: 127.0.0.1:{webrtc_udp_port}
webrtcIPsFromInterfaces: no
webrtcAdditionalHosts: [127.0.0.1]
{_paths(origin)}"""


EDGE_PATH = "~^([A-Za-z0-9_-]{1,64})$"
"""An edge's only path: every stream id (framecast.proto.ids), pulled from the origin's same path."""


def edge_source(origin_rtsp: str, relay_secret: str) -> str:
    """An edge's ``source`` with its credentials (MTX_PATHDEFAULTS_SOURCE): the origin's path of
    the same name, read as the relay user."""
    netloc = urllib.parse.urlsplit(origin_rtsp).netloc
    return f"rtsp://{RELAY_USER}:{urllib.parse.quote(relay_secret, safe='')}@{netloc}/$G1"


def _paths(origin: str | None) -> str:
    if origin is None:
        return "paths:\n  all_others:\n"
    return f"""pathDefaults:
  source: {origin.rstrip("/")}/$G1
  sourceOnDemand: yes
  rtspTransport: tcp
paths:
  "{EDGE_PATH}":
"""

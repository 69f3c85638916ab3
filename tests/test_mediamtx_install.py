"""``framecast mediamtx install``: the pinned release, checked against its published checksums.

A loopback HTTP server plays the release host, so the download, the check and the unpacking
are real; only the address differs.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from framecast.devstack import mediamtx


def _release(root: Path, *, corrupt: bool = False) -> None:
    binary = b"#!/bin/sh\necho mediamtx-stand-in\n"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("mediamtx")
        info.size = len(binary)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(binary))
        licence = tarfile.TarInfo("LICENSE")
        tar.addfile(licence, io.BytesIO(b""))
    archive = buffer.getvalue()
    folder = root / mediamtx.VERSION
    folder.mkdir(parents=True)
    asset = mediamtx._asset()
    (folder / asset).write_bytes(archive + (b"tampered" if corrupt else b""))
    digest = hashlib.sha256(archive).hexdigest()
    (folder / "checksums.sha256").write_text(f"{'0' * 64}  other.tar.gz\n{digest}  {asset}\n")


@pytest.fixture
def release_host(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "releases"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


@pytest.fixture(autouse=True)
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FRAMECAST_MEDIAMTX_BIN", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")


def test_install_verifies_and_unpacks_the_pinned_release(release_host: tuple[str, Path]) -> None:
    url, root = release_host
    _release(root)
    path = mediamtx.install(url)
    assert path == mediamtx.cache_dir() / "mediamtx"
    assert path.stat().st_mode & 0o111
    assert mediamtx.find_mediamtx() == str(path)


def test_a_tampered_download_is_refused(release_host: tuple[str, Path]) -> None:
    url, root = release_host
    _release(root, corrupt=True)
    with pytest.raises(mediamtx.MediaMTXInstallError, match="checksum mismatch"):
        mediamtx.install(url)
    assert mediamtx.find_mediamtx() is None


def test_an_unreachable_release_host_is_a_clear_error() -> None:
    with pytest.raises(mediamtx.MediaMTXInstallError, match="could not download http://127.0.0.1:1/"):
        mediamtx.install("http://127.0.0.1:1")


def test_the_generated_config_sends_every_access_to_the_hook() -> None:
    text = mediamtx.config(auth_url="http://127.0.0.1:8081/mediamtx/auth")
    assert "authMethod: http" in text
    assert "authHTTPAddress: http://127.0.0.1:8081/mediamtx/auth" in text
    assert "authHTTPExclude: []" in text
    assert "all_others:" in text

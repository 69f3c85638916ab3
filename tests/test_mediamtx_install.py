"""``framecast mediamtx install``: the pinned release, checked against its published checksums.

A loopback HTTP server plays the release host, so the download, the check and the unpacking
are real; only the address differs.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from framecast.devstack import mediamtx
from tests.support.release_host import publish_release, release_host

STAND_IN = b"#!/bin/sh\necho mediamtx-stand-in\n"


@pytest.fixture
def release_host_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A release host on loopback and the folder it serves."""
    root = tmp_path / "releases"
    root.mkdir()
    with release_host(root) as url:
        yield url, root


@pytest.fixture(autouse=True)
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("FRAMECAST_MEDIAMTX_BIN", raising=False)
    monkeypatch.setenv("PATH", "/usr/bin:/bin")


def test_install_verifies_and_unpacks_the_pinned_release(release_host_root: tuple[str, Path]) -> None:
    url, root = release_host_root
    publish_release(root, STAND_IN)
    path = mediamtx.install(url)
    assert path == mediamtx.cache_dir() / "mediamtx"
    assert path.stat().st_mode & 0o111
    assert mediamtx.find_mediamtx() == str(path)


def test_install_shows_its_progress(release_host_root: tuple[str, Path]) -> None:
    url, root = release_host_root
    publish_release(root, STAND_IN * 50_000)
    out = io.StringIO()
    mediamtx.install(url, progress=mediamtx.ProgressBar(out, "download"))
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("  download [#########################] 100%"), lines
    assert len(lines) <= 5  # not a terminal: a line per quarter, not one per chunk


def test_a_tampered_download_is_refused(release_host_root: tuple[str, Path]) -> None:
    url, root = release_host_root
    publish_release(root, STAND_IN, corrupt=True)
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

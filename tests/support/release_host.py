"""A MediaMTX release host on loopback: the download, the checksum check and the unpacking that
``framecast mediamtx install`` and ``framecast up`` do are real; only the address differs."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

from framecast.devstack import mediamtx

__all__ = ["publish_release", "release_host"]


def publish_release(root: Path, binary: bytes, *, corrupt: bool = False) -> None:
    """Lay out the pinned release under ``root`` as GitHub serves it: the tarball of this
    machine's asset (``mediamtx`` and a LICENSE) and ``checksums.sha256``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        info = tarfile.TarInfo("mediamtx")
        info.size = len(binary)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(binary))
        tar.addfile(tarfile.TarInfo("LICENSE"), io.BytesIO(b""))
    archive = buffer.getvalue()
    folder = root / mediamtx.VERSION
    folder.mkdir(parents=True)
    asset = mediamtx._asset()
    (folder / asset).write_bytes(archive + (b"tampered" if corrupt else b""))
    digest = hashlib.sha256(archive).hexdigest()
    (folder / "checksums.sha256").write_text(f"{'0' * 64}  other.tar.gz\n{digest}  {asset}\n")


@contextlib.contextmanager
def release_host(root: Path) -> Iterator[str]:
    """An HTTP server for ``root`` on a free loopback port; yields its base URL."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()

"""The benchmarks still run: a minimal transport run prints every row and writes its JSON.

No timing is asserted - figures belong in docs/performance.md, not in pass/fail.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.browser import CHROMIUM

ROOT = Path(__file__).resolve().parent.parent


def test_transport_benchmark_prints_every_row_and_writes_json(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "transport", "--quick", "--frames", "30", "--quiet",
         "--results", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    for size in ("640x360", "1920x1080"):
        for path in ("(a)", "(b)", "(c)", "(c2)", "(d)", "(e)", "(w)"):
            assert any(line.startswith(size) and f" {path} " in line for line in lines), (size, path, done.stdout)
        assert any(line.startswith(f"{size}: (c)/(b) fps") for line in lines), done.stdout
    result = json.loads((tmp_path / "transport.json").read_text())
    assert set(result["summary"]) == {"640x360", "1920x1080"}
    assert result["environment"]["cpu_model"]
    for rows in result["summary"].values():
        assert all(rows[path]["runs"] == 1 for path in ("a", "b", "c", "c2", "d", "e", "w")), rows


def test_auth_hook_benchmark_prints_its_tables(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.auth_hook", "--quick", "--quiet", "--results", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for needle in ("bare", "allow", "ES256", "EdDSA"):
        assert needle in done.stdout, (needle, done.stdout)
    assert (tmp_path / "auth_hook.json").exists()


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium is not installed (apt-get install chromium)")
def test_glass_benchmark_prints_every_row(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "glass", "--quick", "--quiet", "--results", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for label, stream in (("framecast", "640x360@30"), ("framecast", "1280x720@30"), ("floor", "640x360@30")):
        assert any(line.startswith(label) and f" {stream} " in line for line in done.stdout.splitlines()), (
            label, stream, done.stdout)
    assert "failed" not in done.stdout, done.stdout
    result = json.loads((tmp_path / "glass.json").read_text())
    measured = [r for r in result["results"] if "runs" in r]  # real-MediaMTX rows skip without a binary
    assert all(r["runs"][0]["samples"] > 0 for r in measured), result["results"]

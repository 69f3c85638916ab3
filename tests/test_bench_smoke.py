"""The benchmarks still run: minimal runs print every row and write their JSON.

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


def test_soak_benchmark_prints_its_tables_and_writes_json(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "soak", "--minutes", "0.2", "--cycles", "2", "--quiet",
         "--results", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for needle in ("RSS slope MiB/h", "drop %", "states other than publishing", "back to baseline",
                   "cycle p50", "streams per encoder"):
        assert needle in done.stdout, (needle, done.stdout)
    result = json.loads((tmp_path / "soak.json").read_text())
    soak, churn = result["soak"], result["churn"]
    assert "error" not in soak and "error" not in churn, (soak.get("error"), churn.get("error"))
    assert len(soak["streams"]) == 4
    for stream in soak["streams"]:
        assert {"encoder", "drop_pct", "sent_fps", "fps_out", "states_other_than_publishing"} <= stream.keys()
    processes = {p["process"]: p for p in soak["processes"]}
    for name in ("auth", "capture", "encoder-a", "encoder-b", "producer (SDK, 4 streams)", "FFmpeg stream 0"):
        assert {"rss_start_mib", "rss_end_mib", "rss_slope_mib_per_h"} <= processes[name].keys(), name
    assert churn["cycles"] == 2 and len(churn["runs"]) == 2 and not churn["failed"], churn["failed"]
    assert sum(churn["per_encoder"].values()) == 2
    assert set(churn["per_encoder"]) <= {"encoder-a", "encoder-b"}
    assert all(isinstance(row["back"], bool) for row in churn["baseline"].values())
    assert {"FFmpeg processes of encoder-a", "open fds: bench (this process)", "open fds: encoder-b",
            "/dev/shm entries of these streams"} <= churn["baseline"].keys()


def test_a_run_that_names_no_group_leaves_soak_out() -> None:
    from bench.__main__ import DEFAULT_GROUPS, GROUPS

    assert GROUPS[-1] == "soak" and "soak" not in DEFAULT_GROUPS
    done = subprocess.run([sys.executable, "-m", "bench", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    words = " ".join(done.stdout.split())  # argparse wraps the help to the terminal's width
    assert "default: all but soak" in words and "runs only when named" in words, done.stdout

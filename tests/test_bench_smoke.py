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


def test_simulation_prints_the_model_and_the_day_and_writes_json(tmp_path: Path) -> None:
    def simulate(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "bench.simulate", "--quick", "--seed", "3", *args],
                              cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    out = simulate("--results", str(tmp_path))
    lines = out.splitlines()
    for cameras, viewers in (("10", "100"), ("200", "2,000"), ("1,000", "50,000"), ("10,000", "1,000,000")):
        assert any(line.split()[:2] == [cameras, viewers] for line in lines if line.strip()), (cameras, out)
    for needle in ("encoder nodes", "MediaMTX edges", "auth workers", "JetStream writes/s",
                   "max/mean", "stddev", "shm share", "stream time on shared memory", "stream time on NATS",
                   "refusals", "unencoded stream-seconds", "host lost", "host joined", "drain", "streams moved",
                   "peak joins/s", "hook decisions/s", "writes per stream start"):
        assert needle in out, (needle, out)
    hours = [line for line in lines if line[:2].isdigit() and line[2:3] == ":"]
    assert len(hours) == 24, out  # the compressed day, hour by hour
    result = json.loads((tmp_path / "simulate.json").read_text())
    assert result["environment"]["cpu_model"] and result["scenario"]["seed"] == 3
    assert {m["event"] for m in result["moves"]} >= {"host lost", "host joined", "drain"}
    assert sum(m["streams_moved"] for m in result["moves"]) > 0
    placed = result["placement"]["placements"]
    assert placed["shm"] > 0 and placed["nats, no encoder on its host"] > 0, placed
    again = simulate("--no-save")
    same_seed = again.split("\n", 1)[1].rstrip()  # past the environment line, which holds the load average
    assert same_seed == out.split("\n", 1)[1].split("\n(simulate:")[0].rstrip(), "not deterministic"


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's header: the signature, then the IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", (path, head)
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_plots_draw_every_figure_from_the_committed_results(tmp_path: Path) -> None:
    from bench.plots import PLOTS

    def draw(results: Path, out: Path) -> str:
        done = subprocess.run([sys.executable, "-m", "bench.plots", "--results", str(results), "--out", str(out)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    out = draw(ROOT / "bench" / "results", tmp_path / "all")
    assert "skipped" not in out, out
    for plot in PLOTS:
        png = tmp_path / "all" / f"{plot.name}.png"
        assert png.exists(), (plot.name, out)
        assert _png_size(png) == plot.pixels, plot.name
        assert b"Software" not in png.read_bytes()[:4096] and b"tIME" not in png.read_bytes(), plot.name
    # only the results that are there are drawn, and drawing again gives the same bytes
    some = tmp_path / "some"
    some.mkdir()
    (some / "latency.json").write_text((ROOT / "bench" / "results" / "latency.json").read_text())
    out = draw(some, tmp_path / "again")
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == ["latency.png"], out
    assert "transport: skipped" in out, out
    assert (tmp_path / "again" / "latency.png").read_bytes() == (tmp_path / "all" / "latency.png").read_bytes()

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


def test_startup_benchmark_times_the_first_picture_or_says_why_not(tmp_path: Path) -> None:
    from tests.support.real_mediamtx import BINARY

    done = subprocess.run(
        [sys.executable, "-m", "bench", "startup", "--quick", "--quiet", "--results", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    if BINARY is None:
        assert "skipped: no mediamtx binary" in done.stdout, done.stdout
        return
    assert any(line.startswith("640x360 ") for line in done.stdout.splitlines()), done.stdout
    (row,) = json.loads((tmp_path / "startup.json").read_text())["rows"]
    assert row["runs"] and all("picture" in run and "path" in run for run in row["runs"]), row


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

"""What every benchmark prints and records: a plain-text table, the environment, a JSON file."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, title: str = "") -> str:
    """A fixed-width table: text left-aligned, numbers right-aligned."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [all(_is_number(row[i]) for row in rows) and bool(rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    out = [title] if title else []
    out += [line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)]
    return "\n".join(out)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) or value in ("-", "n/a")


def _cell(value: object) -> str:
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def median(values: Sequence[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _first_line(command: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(command), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment() -> dict[str, Any]:
    """The machine and software the figures were measured on."""
    import imageio_ffmpeg

    from framecast.devstack.nats import find_nats_server

    cpu: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for ln in cpuinfo:
                key, _, value = ln.partition(":")
                cpu.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    memory_kb = 0
    try:
        with open("/proc/meminfo") as meminfo:
            memory_kb = int(meminfo.readline().split()[1])
    except (OSError, ValueError, IndexError):
        pass
    root = Path(__file__).resolve().parent.parent
    commit = _first_line(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return {
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_model": cpu.get("model name", "unknown"),
        "cpu_family_model": f"family {cpu.get('cpu family', '?')} model {cpu.get('model', '?')}",
        "virtualised": "hypervisor" in cpu.get("flags", "").split(),
        "memory_gib": round(memory_kb / 2**20, 1),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "ffmpeg": _first_line([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-version"]),
        "nats_server": _first_line([find_nats_server(), "--version"]),
        "numpy": _version("numpy"),
        "nats_py": _version("nats-py"),
        "imageio_ffmpeg": _version("imageio-ffmpeg"),
        "git_commit": commit + ("+dirty" if dirty else ""),
    }


def describe(env: dict[str, Any]) -> str:
    load = ", ".join(f"{v:.2f}" for v in env["load_average"])
    return (
        f"{env['cpu_model']} ({env['cpu_family_model']}{', virtual machine' if env['virtualised'] else ''}), "
        f"{env['cpus_usable']} of {env['cpus']} CPUs usable, load average {load}; "
        f"Python {env['python']}; {env['ffmpeg']}"
    )


def save(group: str, data: dict[str, Any], results_dir: Path | None) -> Path | None:
    """Write ``data`` to ``<results_dir>/<group>.json`` (atomically); None when not saving."""
    if results_dir is None:
        return None
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{group}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)
    return path


def save_standalone(group: str, data: dict[str, Any], *, quick: bool, results: Path | None, no_save: bool) -> None:
    """Save the result of a script run on its own (``python -m bench.<script>``) where its
    options say - ``bench/results`` unless ``--quick`` (then only with ``--results``) or
    ``--no-save`` - and say where."""
    path = save(group, data, None if no_save else results or (None if quick else RESULTS_DIR))
    if path is not None:
        print(f"({group}: {data['elapsed_s']:.0f} s; written to {path})", flush=True)


def _clean(value: Any) -> Any:
    """NaN (a figure that could not be measured) becomes null, floats get 4 significant decimals."""
    if isinstance(value, float):
        return None if value != value else round(value, 4)
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    return value


def _jsonable(value: object) -> object:
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")

"""``python -m bench.plots``: draw the figures docs/performance.md compares, from bench/results/*.json.

Why: a table of medians hides the spread and the trend people compare (latency per path, the cost
of each viewer, streams against CPU). This reads only the committed results - it measures nothing -
and writes one PNG per figure into docs/plots/, each captioned with the command, machine and date
of the run that produced its data. A figure whose results file is missing, or lacks the fields it
draws, is skipped, saying so. Output is deterministic: fixed size and DPI, the Agg renderer, no
software or time stamp in the PNG, so redrawing unchanged results leaves the files unchanged.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

from .report import RESULTS_DIR, median

OUT_DIR = Path(__file__).resolve().parent.parent / "docs" / "plots"
DPI = 100
STYLE = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "xtick.labelsize": 8, "ytick.labelsize": 8, "figure.titlesize": 11.5,
    "axes.grid": True, "grid.color": "0.88", "grid.linewidth": 0.6, "axes.axisbelow": True,
    "axes.spines.top": False, "axes.spines.right": False, "savefig.facecolor": "white",
}
FRAMECAST, MJPEG, HLS, STAND_IN, FLOOR, MACHINE = "#1f77b4", "#d62728", "#ff7f0e", "#9467bd", "#7f7f7f", "#2ca02c"
SIZE_SHADES = {"640x360": 1.0, "1280x720": 0.6}
Data = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Plot:
    name: str
    """docs/plots/<name>.png"""
    group: str
    """bench/results/<group>.json, written by ``python -m bench <group>``"""
    title: str
    inches: tuple[float, float]
    draw: Callable[[Figure, Data], None]

    @property
    def pixels(self) -> tuple[int, int]:
        return round(self.inches[0] * DPI), round(self.inches[1] * DPI)


class MissingData(Exception):
    """The results file lacks what a figure draws."""


# ---------------------------------------------------------------- caption and helpers


def command(group: str, data: Data) -> str:
    """The command line that wrote this results file, as far as the file records it."""
    words = ["python -m bench", group]
    if data.get("quick"):
        words.append("--quick")
    if "repeat" in (data.get("settings") or {}):
        words.append(f"--repeat {data['settings']['repeat']}")
    return " ".join(words)


def caption(group: str, data: Data) -> str:
    """Two lines: the command, results file, date and commit; the machine and its load."""
    env = data.get("environment") or {}
    try:
        when = datetime.datetime.fromisoformat(env["when"]).strftime("%Y-%m-%d %H:%M UTC")
    except (KeyError, TypeError, ValueError):
        when = "date not recorded"
    cpus = f"{env.get('cpus', '?')} {'vCPUs' if env.get('virtualised') else 'CPUs'}"
    kind = ", virtual machine" if env.get("virtualised") else ""
    machine = f"{env.get('cpu_model', 'unknown CPU')} ({env.get('cpu_family_model', '?')}), {cpus}{kind}"
    if env.get("memory_gib"):
        machine += f", {env['memory_gib']} GiB"
    load = ""
    if env.get("load_average") and data.get("load_average_after"):
        load = (f"; load average {env['load_average'][0]:.1f} at the start, "
                f"{data['load_average_after'][0]:.1f} at the end (shared machine)")
    return (f"data: {command(group, data)}  ->  bench/results/{group}.json, {when}, commit "
            f"{env.get('git_commit', '?')}\nmachine: {machine}{load}")


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.2g}" if value < 1 else f"{value:.3g}"


def _viewer_axis(ax: Axes, counts: list[int]) -> None:
    ax.set_xscale("symlog", linthresh=1)
    ax.xaxis.set_major_locator(FixedLocator(counts))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_xlim(min(counts) - 0.1 if min(counts) == 0 else min(counts) * 0.8, max(counts) * 1.9)
    ax.set_xlabel("viewers (log scale)" if min(counts) > 0 else "viewers (0, then log scale)")


def _ms_axis(ax: Axes, low: float, high: float) -> None:
    ax.set_xscale("log")
    ticks = [t for t in (20, 30, 50, 100, 200, 300, 500, 1000, 2000, 3000, 5000) if low <= t <= high]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_xlim(low, high)


def _runs_panel(ax: Axes, rows: list[tuple[str, str, list[tuple[float, float]]]], *, low: float, high: float,
                goal: tuple[float, str] | None = None) -> None:
    """One row per path: each run's p50 (dot) to p95 (tick), and the median p50 over runs (bar)."""
    for i, (_label, color, runs) in enumerate(rows):
        y = len(rows) - 1 - i
        middle = median([p50 for p50, _ in runs])
        ax.barh(y, middle, height=0.62, color=color, alpha=0.22, left=0)
        for k, (p50, p95) in enumerate(runs):
            dy = ((len(runs) - 1) / 2 - k) * 0.16  # the first run on top
            ax.plot([p50, p95], [y + dy] * 2, color=color, linewidth=1.2)
            ax.plot(p50, y + dy, "o", color=color, markersize=4.5)
            ax.plot(p95, y + dy, "|", color=color, markersize=8, markeredgewidth=1.6)
        end = max(p95 for _, p95 in runs)
        ax.text(end * 1.1, y, f"p50 {middle:,.0f}", ha="left", va="center", fontsize=7.5, color="0.2")
    ax.set_yticks(range(len(rows)), [label for label, _, _ in reversed(rows)])
    ax.set_ylim(-0.6, len(rows) - 0.4)
    _ms_axis(ax, low, high)
    ax.grid(axis="y", visible=False)
    if goal is not None:
        ax.axvline(goal[0], color="0.35", linestyle="--", linewidth=1)
        ax.text(goal[0] * 1.03, len(rows) - 0.55, goal[1], fontsize=7.5, color="0.3", va="bottom")
    handles = [Line2D([], [], color="0.3", marker="o", markersize=4.5, label="one run: p50 (dot) to p95 (bar end)"),
               Patch(color="0.3", alpha=0.22, label="median p50 over the runs (number at the right)")]
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=2, frameon=False,
              borderaxespad=0.2)


def _need(data: Data, *keys: str) -> Any:
    value: Any = data
    for key in keys:
        if not isinstance(value, dict) or value.get(key) is None:
            raise MissingData(f"no {'.'.join(keys)}")
        value = value[key]
    return value


# ---------------------------------------------------------------- the figures


TRANSPORT_ORDER = ("a", "w", "b", "c", "c2", "d", "e")


def draw_transport(fig: Figure, data: Data) -> None:
    summary, paths = _need(data, "summary"), _need(data, "paths")
    runs = data.get("runs") or {}
    sizes = [s for s in summary if any(p in summary[s] for p in TRANSPORT_ORDER)]
    order = [p for p in TRANSPORT_ORDER if p in paths and any(p in summary[s] for s in sizes)]
    if not order:
        raise MissingData("no transport rows")
    colors = ("#6baed6", "#2171b5", "#08306b")
    axes = fig.subplots(1, 2, sharey=True)
    panels = ((axes[0], "fps", "frames/s into FFmpeg, unpaced: higher is better (log scale)",
               (10, 30, 100, 300, 1000, 3000, 10000)),
              (axes[1], "cpu_ms_per_frame", "CPU-ms per delivered frame, all processes: lower is better (log)",
               (0.1, 0.3, 1, 3, 10, 30, 100, 300)))
    for ax, key, label, ticks in panels:
        height = 0.8 / len(sizes)
        top = 0.0
        for j, size in enumerate(sizes):
            for i, path in enumerate(order):
                row = summary[size].get(path)
                if not row or not row.get(key):
                    continue
                y = len(order) - 1 - i + (len(sizes) - 1) / 2 * height - j * height
                ax.barh(y, row[key], height=height * 0.92, color=colors[j % len(colors)],
                        label=f"{size}, median" if i == 0 else None)
                each = [r[key] for r in (runs.get(size) or {}).get(path, []) if r.get(key)]
                ax.plot(each, [y] * len(each), "o", color="black", markersize=2.4, alpha=0.6,
                        label="each run" if (i == 0 and j == 0) else None)
                end = max([row[key], *each])
                ax.text(end * 1.12, y, _number(row[key]), va="center", fontsize=7)
                top = max(top, end)
        ax.set_xscale("log")
        shown = [t for t in ticks if t <= top * 4]
        ax.xaxis.set_major_locator(FixedLocator(shown))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,g}"))
        ax.set_xlim(shown[0] / 2, top * 4)
        ax.set_xlabel(label)
        ax.grid(axis="y", visible=False)
    axes[0].axvline(30, color=MJPEG, linestyle="--", linewidth=1, label="30 fps: what one stream needs")
    labels = [textwrap.fill(f"({p}) {paths[p]}", 34, break_on_hyphens=False) for p in order]
    axes[0].set_yticks(range(len(order)), list(reversed(labels)))
    axes[0].set_ylim(-0.6, len(order) - 0.4)
    axes[0].legend(loc="lower left", bbox_to_anchor=(0, 1.0), ncols=2, frameon=False)


def draw_latency(fig: Figure, data: Data) -> None:
    rows = [r for r in _need(data, "results") if r.get("p50_ms") is not None]
    if not rows:
        raise MissingData("no latency rows")
    left, right = fig.subplots(1, 2, width_ratios=(1.1, 1))
    names = [f"{r['size']}@{r['fps']}" for r in rows]
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        color = FRAMECAST if i == 0 else "#0b3d66"
        left.plot([r["min_ms"], r["max_ms"]], [y, y], color=color, linewidth=1)
        left.barh(y, r["p95_ms"] - r["p50_ms"], left=r["p50_ms"], height=0.35, color=color, alpha=0.35)
        marks = (("min_ms", "|", "min"), ("p50_ms", "o", "p50"), ("p95_ms", "s", "p95"), ("p99_ms", "D", "p99"),
                 ("max_ms", "|", "max"))
        for k, (key, marker, name) in enumerate(marks):  # labels alternate below and above: neighbours may touch
            left.plot(r[key], y, marker, color=color, markersize=6 if marker != "|" else 12, markeredgewidth=1.5)
            above = k % 2 == 1
            left.annotate(f"{name} {r[key]:.1f}", (r[key], y), xytext=(0, 9 if above else -9),
                          textcoords="offset points", ha="center", va="bottom" if above else "top", fontsize=7)
    left.set_yticks(range(len(rows)), list(reversed(names)))
    left.set_ylim(-0.6, len(rows) - 0.4)
    left.set_xlabel("capture stamp to decoded at the receiver, ms (line: min to max; box: p50 to p95)")
    left.set_title(f"distribution over the {rows[0].get('frames_in_window', 'measured')} frames of the window")
    left.grid(axis="y", visible=False)
    parts = (("capture_to_pump_write_p50_ms", "capture -> pump write (ring, pacing)", FRAMECAST),
             ("rest_p50_ms", "rest: pump write, x264, RTSP, decode", MACHINE),
             ("receiver_hold_ms", "test receiver's one-frame hold (not framecast)", FLOOR))
    for i, r in enumerate(rows):
        y, start = len(rows) - 1 - i, 0.0
        for key, label, color in parts:
            value = r.get(key) or 0.0
            right.barh(y, value, left=start, height=0.5, color=color, alpha=0.8, label=label if i == 0 else None)
            if value >= 3:
                right.text(start + value / 2, y, f"{value:.1f}", ha="center", va="center", fontsize=7.5,
                           color="white")
            start += value
        right.text(start + 0.8, y, f"p50 {r['p50_ms']:.1f} ms", va="center", fontsize=7.5)
    right.set_yticks(range(len(rows)), list(reversed(names)))
    right.set_ylim(-0.6, len(rows) + 0.5)
    right.set_xlim(0, max(r["p50_ms"] for r in rows) * 1.3)
    right.set_xlabel("ms of the median frame")
    right.set_title("where the p50 goes")
    right.legend(loc="upper left", frameon=False, ncols=1)
    right.grid(axis="y", visible=False)


def draw_capacity(fig: Figure, data: Data) -> None:
    rows = [r for r in _need(data, "results") if r.get("cpu_pct_of_one_core")]
    if not rows:
        raise MissingData("no capacity rows with CPU figures")
    cpus = (data.get("environment") or {}).get("cpus") or 0
    streams = [r["streams"] for r in rows]
    used, per_stream, fps = fig.subplots(1, 3, width_ratios=(1.35, 1, 1))
    parts = list(rows[0]["cpu_pct_of_one_core"])
    shades = (FRAMECAST, "#6baed6", MACHINE, "#bcbd22", "#17becf")
    stacks = [[r["cpu_pct_of_one_core"].get(p, 0.0) / 100 for r in rows] for p in parts]
    used.stackplot(streams, stacks, labels=[textwrap.shorten(p, 60) for p in parts], colors=shades[:len(parts)],
                   alpha=0.85)
    used.plot(streams, [r["machine_busy_pct"] / 100 * cpus for r in rows], "k.--", linewidth=1,
              label="whole machine busy (anyone, other tenants too)")
    if cpus:
        used.axhline(cpus, color=MJPEG, linewidth=1, label=f"{cpus} CPUs: all of the machine")
        used.set_ylim(0, cpus * 1.6)
    used.set_xlabel("concurrent 640x360@30 streams")
    used.set_ylabel("CPU, cores (CPU-s per s)")
    used.set_title("CPU used, by process")
    used.legend(loc="upper left", frameon=False, fontsize=7)
    per_stream.plot(streams, [r["our_cpu_pct"] / r["streams"] for r in rows], "o-", color=FRAMECAST,
                    label="in all: our processes ÷ streams")
    per_stream.plot(streams, [r["ffmpeg_cpu_pct_per_stream"] for r in rows], "s-", color="#6baed6",
                    label="of which FFmpeg libx264")
    per_stream.set_ylim(0, max(r["our_cpu_pct"] / r["streams"] for r in rows) * 1.25)
    per_stream.set_xlabel("concurrent 640x360@30 streams")
    per_stream.set_ylabel("% of one core per stream")
    per_stream.set_title("CPU per stream")
    per_stream.legend(loc="lower right", frameon=False)
    threshold = (data.get("settings") or {}).get("sustained_fps")
    fps.plot(streams, [r["fps_out_mean"] for r in rows], "o-", color=FRAMECAST, label="fps into FFmpeg, mean")
    fps.plot(streams, [r["fps_out_min"] for r in rows], "v-", color="#0b3d66", label="fps into FFmpeg, worst stream")
    fps.plot(streams, [r["fps_at_server_min"] for r in rows], "^:", color=MACHINE, label="fps at RTSP server, worst")
    for r in rows:
        if not r.get("sustained"):
            fps.plot(r["streams"], r["fps_out_min"], "x", color=MJPEG, markersize=9)
    if threshold:
        fps.axhline(threshold, color=MJPEG, linestyle="--", linewidth=1)
        fps.text(streams[0], threshold + 0.05, f"sustained: every stream >= {threshold:g} fps", color=MJPEG,
                 fontsize=7.5, va="bottom")
        fps.set_ylim(threshold - 0.5, 30.6)
    fps.set_xlabel("concurrent 640x360@30 streams")
    fps.set_ylabel("frames per second")
    held = [r["streams"] for r in rows if r.get("sustained")]
    answer = f"{max(held)} streams sustained" if held else "no step sustained"
    if held and data.get("answer_is_the_bound"):
        answer += ", the most tried"
    fps.set_title(answer)
    fps.legend(loc="lower left", frameon=False, fontsize=7)
    for ax in (used, per_stream, fps):
        ax.set_xticks(streams)


def _glass_kind(row: Data) -> tuple[str, str]:
    first = (row.get("runs") or [{}])[0]
    if row["label"].startswith("floor"):
        return FLOOR, row["label"]
    if first.get("server") == "bridge":
        return STAND_IN, f"stand-in (WHEP bridge){row['label'].removeprefix('framecast')}"
    if first.get("via") == "hls":
        return HLS, row["label"]
    return FRAMECAST, f"{row['label']}, WebRTC" if "," not in row["label"] else row["label"].replace(",", ", WebRTC,")


def draw_glass(fig: Figure, data: Data) -> None:
    rows = [r for r in _need(data, "results") if r.get("runs")]
    if not rows:
        raise MissingData("no glass rows with runs")
    latency, first = fig.subplots(1, 2, sharey=True, width_ratios=(1.5, 1))
    drawn = []
    for r in rows:
        color, label = _glass_kind(r)
        drawn.append((f"{label}\n{r['size']}@{r['fps']}", color,
                      [(run["p50_ms"], run["p95_ms"]) for run in r["runs"]]))
    _runs_panel(latency, drawn, low=30, high=6000, goal=(300, "300 ms goal"))
    latency.set_xlabel("capture stamp to the frame on screen, ms (log scale)")
    for i, r in enumerate(rows):
        y = len(rows) - 1 - i
        each = [run["first_picture_ms"] for run in r["runs"] if run.get("first_picture_ms")]
        if not each:
            continue
        color = drawn[i][1]
        first.barh(y, median(each), height=0.62, color=color, alpha=0.22)
        first.plot(each, [y] * len(each), "o", color=color, markersize=4.5)
        first.text(7600, y, f"{median(each):,.0f}", ha="right", va="center", fontsize=7.5, color="0.2")
    _ms_axis(first, 300, 8000)
    first.axvline(500, color="0.35", linestyle="--", linewidth=1)
    first.text(515, len(rows) - 0.55, "500 ms goal", fontsize=7.5, color="0.3", va="bottom")
    first.set_xlabel("click to first picture, ms (log scale)")
    first.set_title("first picture (dots: runs; bar: median)", fontsize=9)
    first.grid(axis="y", visible=False)
    first.tick_params(axis="y", left=False)


def _cpu_per_viewer(rows: list[Data], key: str) -> list[tuple[int, float]]:
    idle = next((r[key] for r in rows if r["viewers"] == 0), None)
    if idle is None:
        return []
    return [(r["viewers"], (r[key] - idle) / r["viewers"] * 100) for r in rows if r["viewers"] > 0]


def _line(ax: Axes, points: list[tuple[float, float]], style: str, color: str, label: str | None,
          *, alpha: float = 1.0, fmt: str = "{:.2g}", dy: float = 0.0) -> None:
    """A line of points, its last value written beside its last point."""
    if not points:
        return
    ax.plot([x for x, _ in points], [y for _, y in points], style, color=color, alpha=alpha, label=label)
    x, y = points[-1]
    ax.annotate(fmt.format(y), (x, y), xytext=(5, dy), textcoords="offset points", va="center", fontsize=7,
                color=color)


def draw_mjpeg(fig: Figure, data: Data) -> None:
    results = _need(data, "results")
    sizes = [s for s in results if (results[s].get("framecast") or {}).get("rows")
             and (results[s].get("mjpeg") or {}).get("rows")]
    if not sizes:
        raise MissingData("no framecast and MJPEG rows")
    kbits, per_viewer, total = fig.subplots(1, 3)
    counts: set[int] = set()
    for size in sizes:
        alpha, style = SIZE_SHADES.get(size, 1.0), "o-" if size == sizes[0] else "o--"
        dy = -4.0 if size == sizes[0] else 4.0  # two small values at the same point stay apart
        fc, mj = results[size]["framecast"]["rows"], results[size]["mjpeg"]["rows"]
        counts |= {r["viewers"] for r in fc + mj}
        for rows, color, name, serving in ((fc, FRAMECAST, "framecast", "server_cpu_per_s"),
                                           (mj, MJPEG, "MJPEG", "serving_cpu_per_s")):
            watched = [r for r in rows if r["viewers"] > 0 and r.get("bytes_per_viewer_s")]
            _line(kbits, [(r["viewers"], r["bytes_per_viewer_s"] * 8 / 1000) for r in watched], style, color,
                  None, alpha=alpha, fmt="{:,.0f}", dy=-dy)
            _line(per_viewer, _cpu_per_viewer(rows, serving), style, color, f"{name}, {size}", alpha=alpha, dy=dy)
            _line(total, [(r["viewers"], r[serving] + r["encode_cpu_per_s"]) for r in rows], style, color, None,
                  alpha=alpha, dy=dy)
    kbits.set_yscale("log")
    kbits.yaxis.set_major_locator(FixedLocator([300, 500, 1000, 2000, 5000, 10000, 20000]))
    kbits.yaxis.set_minor_locator(NullLocator())
    kbits.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    kbits.set_ylim(300, 20000)
    kbits.set_ylabel("kbit/s received per viewer (log scale)")
    kbits.set_title("bytes per viewer, at the same PSNR")
    per_viewer.set_ylabel("% of one core per viewer, less no viewers")
    per_viewer.set_title("server CPU per viewer (MediaMTX; MJPEG serving)")
    per_viewer.set_ylim(bottom=0)
    per_viewer.legend(frameon=False, loc="upper right")
    total.set_ylabel("CPU-s per s (MediaMTX + x264; serving + JPEG)")
    total.set_title("server CPU in all, with the one encode")
    total.set_ylim(bottom=0)
    for ax in (kbits, per_viewer, total):
        _viewer_axis(ax, sorted(counts if ax is total else counts - {0}))


def draw_mjpeg_latency(fig: Figure, data: Data) -> None:
    results = _need(data, "results")
    drawn = []
    for size, sides in results.items():
        for side, color, name in (("framecast", FRAMECAST, "framecast, WebRTC via MediaMTX"),
                                  ("mjpeg", MJPEG, "MJPEG, <img> in the page")):
            each = ((sides.get(side) or {}).get("glass") or {}).get("each") or []
            runs = [(run["p50_ms"], run["p95_ms"]) for run in each if run.get("p50_ms") is not None]
            if runs:
                drawn.append((f"{name}\n{size}@{data.get('settings', {}).get('fps', 30)}", color, runs))
    if not drawn:
        raise MissingData("no glass-to-glass runs")
    ax = fig.subplots()
    _runs_panel(ax, drawn, low=30, high=600, goal=(300, "300 ms goal"))
    ax.set_xlabel("capture stamp to the frame on screen in Chromium, ms (log scale)")


def draw_viewers(fig: Figure, data: Data) -> None:
    rows = _need(data, "results")
    idle = next((r for r in rows if r.get("kind") == "none"), None)
    kinds = [("whep", "WebRTC (WHEP)", FRAMECAST), ("hls", "HLS", HLS)]
    if not any(r.get("kind") in ("whep", "hls") for r in rows):
        raise MissingData("no WebRTC or HLS rows")
    per_viewer, total, kbits = fig.subplots(1, 3)
    counts = sorted({r["viewers"] for r in rows})
    for kind, name, color in kinds:
        mine = [r for r in rows if r.get("kind") == kind]
        if not mine:
            continue
        dy = 4.0 if kind == "whep" else -4.0
        _line(per_viewer, [(r["viewers"], r["mediamtx_cpu_per_viewer"] * 100) for r in mine], "o-", color, name,
              dy=dy)
        with_idle = ([idle] if idle else []) + mine
        _line(total, [(r["viewers"], r["mediamtx_cpu_per_s"]) for r in with_idle], "o-", color, name, dy=dy)
        _line(kbits, [(r["viewers"], r["received_kbit_s_per_viewer"]) for r in mine], "o-", color, name,
              fmt="{:,.0f}", dy=-dy)
    per_viewer.set_ylabel("MediaMTX, % of one core per viewer (less no viewers)")
    per_viewer.set_title("MediaMTX CPU per viewer")
    total.set_ylabel("MediaMTX CPU-s per s")
    total.set_title("MediaMTX CPU in all")
    kbits.set_ylabel("kbit/s received per viewer")
    kbits.set_title("bytes per viewer")
    for ax in (per_viewer, total, kbits):
        ax.set_ylim(bottom=0)
        _viewer_axis(ax, counts if ax is total else [c for c in counts if c > 0])
        ax.legend(frameon=False, loc="lower right" if ax is kbits else "best")
    kbits.set_ylim(0, max(r.get("received_kbit_s_per_viewer") or 0 for r in rows) * 1.2)


PLOTS = (
    Plot("transport", "transport", "Frames into FFmpeg: frames/s and CPU per frame, by path and frame size",
         (11.0, 6.4), draw_transport),
    Plot("latency", "latency", "Capture to decoded frame (SDK -> encoder -> x264 -> RTSP -> receiver), by stream size",
         (11.0, 4.2), draw_latency),
    Plot("capacity", "capacity", "Streams sustained against CPU: concurrent 640x360@30 libx264 streams on one machine",
         (12.0, 4.8), draw_capacity),
    Plot("glass", "glass", "Glass to glass in Chromium: the real MediaMTX (WebRTC, HLS) beside the stand-in and "
         "the floor", (11.0, 7.2), draw_glass),
    Plot("viewers", "viewers", "Viewers of one 640x360@30 stream through the real MediaMTX: WebRTC vs HLS",
         (12.0, 4.4), draw_viewers),
    Plot("mjpeg", "mjpeg", "framecast (WebRTC via MediaMTX) vs MJPEG (one shared encode): bytes and server CPU "
         "against viewers", (12.0, 4.6), draw_mjpeg),
    Plot("mjpeg_latency", "mjpeg", "Glass to glass in Chromium: framecast (WebRTC via MediaMTX) vs MJPEG",
         (10.0, 4.4), draw_mjpeg_latency),
)


def render(plot: Plot, data: Data, out_dir: Path) -> Path:
    """Draw ``plot`` from ``data`` into ``<out_dir>/<name>.png``; MissingData if the data lacks it."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=plot.inches, dpi=DPI, layout="constrained")
        FigureCanvasAgg(fig)  # Agg, without pyplot's global state
        fig.suptitle(plot.title, fontweight="bold")
        try:
            plot.draw(fig, data)
        except (KeyError, TypeError, IndexError, ZeroDivisionError) as exc:
            raise MissingData(f"{type(exc).__name__}: {exc}") from exc
        # the caption as the figure's x label, so that the layout keeps room for it
        fig.supxlabel(caption(plot.group, data), x=6 / plot.pixels[0], ha="left", fontsize=7.5, color="0.3",
                      linespacing=1.35)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{plot.name}.png"
        fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plots", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, metavar="DIR",
                        help="where the <group>.json files are (default: bench/results, the committed record)")
    parser.add_argument("--out", type=Path, default=OUT_DIR, metavar="DIR",
                        help="where the PNGs go (default: docs/plots)")
    args = parser.parse_args(argv)
    loaded: dict[str, Data | None] = {}
    for plot in PLOTS:
        if plot.group not in loaded:
            source = args.results / f"{plot.group}.json"
            loaded[plot.group] = json.loads(source.read_text()) if source.exists() else None
        data = loaded[plot.group]
        if data is None:
            print(f"{plot.name}: skipped, no {plot.group}.json in {args.results}")
            continue
        try:
            path = render(plot, data, args.out)
        except MissingData as exc:
            print(f"{plot.name}: skipped, {plot.group}.json lacks the data ({exc})")
            continue
        print(f"{plot.name}: {path} ({plot.pixels[0]}x{plot.pixels[1]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

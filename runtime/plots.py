"""The plots of `spex bench --plot DIR`, each as PNG and SVG (matplotlib, no display needed).

- `latency`: each mode's per-query latency distribution (box and every query as a dot), one
  panel per concurrency level;
- `tokens`: tokens generated per mode, split into main-path, speculative-kept and
  speculative-wasted, so the price of speculation is visible beside what it bought;
- `speedup` (when the bench ran at several concurrency levels): each mode's speedup over the
  baseline against concurrency, with the oracle's speedup where the bench measured it.

Figures are built with matplotlib's object API (no pyplot), so nothing global is touched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spexlang.diagnostics import UserError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from runtime.cli.command_run import EngineRun

MODE_COLORS = {"sync": "#2f6fd6", "spec": "#22a06b", "spec+et": "#8a5cc2"}
KEPT_COLOR, SPEC_KEPT_COLOR, WASTED_COLOR = "#2f6fd6", "#22a06b", "#f0a030"
FORMATS = ("png", "svg")


def _figure(width: float, height: float) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError(
            "--plot needs matplotlib: pip install matplotlib (scripts/install.sh installs it)"
        ) from None
    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _save(fig: Figure, directory: Path, name: str) -> list[Path]:
    written = []
    for fmt in FORMATS:
        path = directory / f"{name}.{fmt}"
        # No creation date in the SVG, so the same bench gives the same file.
        metadata = {"Date": None} if fmt == "svg" else None
        fig.savefig(path, format=fmt, metadata=metadata)
        written.append(path)
    return written


def _color(mode: str) -> str:
    return MODE_COLORS.get(mode, "#666666")


def _style(ax: Axes) -> None:
    ax.spines["top"].set_visible(False)
    ax.spines["right"].set_visible(False)
    ax.grid(axis="y", color="#e6e9ef", linewidth=0.8)
    ax.set_axisbelow(True)


def latency_plot(levels: Mapping[int, Mapping[str, EngineRun]], clock: str) -> Figure:
    fig = _figure(3.2 + 2.2 * len(levels), 3.8)
    axes = fig.subplots(1, len(levels), sharey=True, squeeze=False)[0]
    for ax, (concurrency, runs) in zip(axes, levels.items(), strict=True):
        modes = list(runs)
        data = [[r.latency_s for r in runs[m].results if r.status == "ok"] for m in modes]
        box = ax.boxplot(data, tick_labels=modes, widths=0.5, showfliers=False, patch_artist=True)
        for patch, mode in zip(box["boxes"], modes, strict=True):
            patch.set(facecolor=_color(mode), alpha=0.25, edgecolor=_color(mode))
        for median in box["medians"]:
            median.set(color="#1d2330", linewidth=1.5)
        for k, (values, mode) in enumerate(zip(data, modes, strict=True), start=1):
            # Every query as a dot, spread sideways by rank so equal latencies do not hide.
            n = max(1, len(values) - 1)
            xs = [k - 0.18 + 0.36 * i / n for i in range(len(values))]
            ax.scatter(xs, sorted(values), s=9, color=_color(mode), alpha=0.75, linewidths=0)
        ax.set_title(f"concurrency {concurrency}", fontsize=10)
        _style(ax)
    axes[0].set_ylabel(f"latency per query (s, {clock})")
    fig.suptitle("Latency distribution per mode", fontsize=11)
    return fig


def tokens_plot(levels: Mapping[int, Mapping[str, EngineRun]]) -> Figure:
    labels: list[str] = []
    main: list[int] = []
    kept: list[int] = []
    wasted: list[int] = []
    for concurrency, runs in levels.items():
        for mode, run in runs.items():
            rows = run.results
            labels.append(mode if len(levels) == 1 else f"{mode}\nc={concurrency}")
            spec_kept = sum(r.spec_tokens_kept for r in rows)
            waste = sum(r.spec_tokens_wasted for r in rows)
            kept.append(spec_kept)
            wasted.append(waste)
            main.append(max(0, sum(r.tokens_generated for r in rows) - spec_kept - waste))
    fig = _figure(max(4.5, 1.1 * len(labels) + 2.0), 3.8)
    ax = fig.subplots()
    xs = range(len(labels))
    ax.bar(xs, main, color=KEPT_COLOR, label="main path", width=0.6)
    ax.bar(xs, kept, bottom=main, color=SPEC_KEPT_COLOR, label="speculative, kept", width=0.6)
    tops = [a + b for a, b in zip(main, kept, strict=True)]
    ax.bar(xs, wasted, bottom=tops, color=WASTED_COLOR, label="speculative, wasted", width=0.6)
    for x, top, waste in zip(xs, tops, wasted, strict=True):
        total = top + waste
        if total:
            ax.annotate(
                f"{100 * waste / total:.0f}% wasted",
                (x, total),
                textcoords="offset points",
                xytext=(0, 3),
                ha="center",
                fontsize=8,
            )
    ax.set_xticks(list(xs), labels)
    ax.yaxis.set_major_formatter("{x:,.0f}")
    ax.set_ylabel("tokens generated")
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Tokens generated vs wasted", fontsize=11)
    _style(ax)
    return fig


def speedup_plot(report: Mapping[str, Any]) -> Figure:
    """Speedup over the baseline against concurrency, from the bench report's `runs`."""
    runs: Sequence[Mapping[str, Any]] = report["runs"]
    levels = [int(r["concurrency"]) for r in runs]
    baseline = str(report["baseline"])
    fig = _figure(5.6, 3.8)
    ax = fig.subplots()
    modes = [m["mode"] for m in runs[0]["modes"] if m["mode"] != baseline]
    for mode in modes:
        # A level where the mode has no speedup (nothing finished) is a gap in the line.
        ys = [_number(_mode(r, mode).get("speedup")) for r in runs]
        ax.plot(levels, ys, marker="o", color=_color(mode), label=mode)
    oracle = [
        _number(next((m["oracle"]["oracle_speedup"] for m in r["modes"] if m.get("oracle")), None))
        for r in runs
    ]
    if any(o == o for o in oracle):  # NaN marks a level without an oracle
        ax.plot(levels, oracle, marker="s", linestyle="--", color="#555555", label="oracle")
    ax.axhline(1.0, color="#9aa3b2", linewidth=1, linestyle=":")
    ax.set_xscale("log", base=2)
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.set_xlabel("concurrency (queries in flight)")
    ax.set_ylabel(f"speedup over {baseline}")
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False, fontsize=9)
    ax.set_title(f"Speedup vs concurrency ({report.get('strategy', '')})", fontsize=11)
    _style(ax)
    return fig


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else float("nan")


def _mode(level: Mapping[str, Any], mode: str) -> Mapping[str, Any]:
    return next((m for m in level["modes"] if m["mode"] == mode), {})


def write_bench_plots(
    report: Mapping[str, Any],
    levels: Mapping[int, Mapping[str, EngineRun]],
    directory: Path,
    *,
    clock: str = "engine clock",
) -> list[Path]:
    """Write latency, tokens and (with several concurrency levels) speedup as PNG and SVG."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot write plots to {directory}: {e.strerror}") from None
    written = _save(latency_plot(levels, clock), directory, "latency")
    written += _save(tokens_plot(levels), directory, "tokens")
    if len(levels) > 1:
        written += _save(speedup_plot(report), directory, "speedup")
    return written

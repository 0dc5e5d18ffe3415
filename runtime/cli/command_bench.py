"""`spex bench`: run one strategy in several modes side by side and compare them.

Every mode runs the same queries with the same seeds on a fresh engine instance of the same kind
and settings, at the same concurrency, so no cache leaks from one mode into the next and the
baseline is honest: the only difference between `sync` and `spec` is speculation. The table shows
latency, throughput, tokens, waste, hit rate, accuracy, the speedup over the baseline on the
engine clock, and how often each mode's answer equals the baseline's (exact speculation: 100%).

When the baseline is `sync`, its trace also gives each query's oracle (runtime/oracle.py): the
latency of its kept tree with perfect foresight; the table shows the oracle's speedup and how
much of the sync-to-oracle gap each mode closed. `--concurrency 1,4,16` repeats the whole
comparison at each level; `--trace DIR` keeps every mode's trace for `spex view`, and `--plot DIR`
draws the latency, token and speedup plots.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runtime.cli.command_run import (
    MAX_ERRORS_SHOWN,
    MODES,
    EngineRun,
    add_common_arguments,
    engine_spec_of,
    execute,
    load_strategy,
    parse_overrides,
    read_dataset,
)
from runtime.datasets import Dataset
from runtime.engines.factory import EngineSpec, engine_options
from runtime.oracle import TraceCollector, compare_to_oracle, oracle_latencies
from runtime.progress import ProgressBar
from runtime.records import QueryResult, TraceNode, TraceRequest
from runtime.report import (
    BENCH_HEADERS,
    ModeComparison,
    RunSummary,
    bench_rows,
    compare_modes,
    format_table,
    summarize,
)
from runtime.results import ResultsWriter
from runtime.tracefile import RunManifest, TraceFileSink
from runtime.tree_identity import KeptTrees, compare_trees
from spexlang.diagnostics import UserError
from spexlang.version import __version__

if TYPE_CHECKING:
    from compiler.ir import StrategyGraph


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="compare sync and speculative modes on the same queries",
        description=(
            "Run a strategy in several modes on the same questions and seeds, each on a fresh "
            "engine of the same kind, and compare latency, throughput, waste and answers."
        ),
        # bench's --concurrency takes a list, replacing the shared single-value flag.
        conflict_handler="resolve",
    )
    add_common_arguments(parser)
    parser.add_argument(
        "--concurrency",
        default="8",
        metavar="C[,C...]",
        help="queries in flight (default 8); a list such as 1,4,16 runs the comparison at each",
    )
    parser.add_argument(
        "--modes",
        default="sync,spec,spec+et",
        metavar="M1,M2",
        help="comma-separated modes; the first listed of sync or the first mode is the baseline",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "-o", "--output", metavar="DIR", help="write DIR/<mode>.jsonl and DIR/bench.json"
    )
    parser.add_argument(
        "--trace", metavar="DIR", help="write each mode's trace to DIR/<mode>/ (for spex view)"
    )
    parser.add_argument(
        "--plot", metavar="DIR", help="write latency, token and speedup plots (PNG and SVG)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=bench_command)


def parse_modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise UserError(
            f"--modes: unknown mode '{','.join(unknown) or text}': use {', '.join(MODES)}"
        )
    if len(set(modes)) != len(modes):
        raise UserError(f"--modes lists a mode twice: {text}")
    return modes


def parse_concurrency(text: str) -> list[int]:
    levels: list[int] = []
    for item in (x.strip() for x in str(text).split(",")):
        if not item.isdigit() or int(item) < 1:
            raise UserError(
                f"--concurrency expects positive whole numbers such as 8 or 1,4,16, got '{text}'"
            )
        levels.append(int(item))
    if len(set(levels)) != len(levels):
        raise UserError(f"--concurrency lists a level twice: {text}")
    return levels


@dataclass(frozen=True)
class BenchLevel:
    """The comparison of every mode at one concurrency level."""

    concurrency: int
    runs: dict[str, EngineRun]
    comparisons: list[ModeComparison]


class _TeeSink:
    """Hands each trace record to several sinks (the trace file, the oracle's collector and the
    kept-tree digests)."""

    def __init__(self, *sinks: TraceFileSink | TraceCollector | KeptTrees) -> None:
        self.sinks = sinks

    def run(self, record: object) -> None:
        # The run's header record (trace v2); a sink that keeps no header is skipped.
        for s in self.sinks:
            header = getattr(s, "run", None)
            if callable(header):
                header(record)

    def node(self, record: TraceNode) -> None:
        for s in self.sinks:
            s.node(record)

    def request(self, record: TraceRequest) -> None:
        for s in self.sinks:
            s.request(record)


def _refuse_file(flag: str, path: Path | None) -> None:
    if path is not None and path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; spex bench writes a directory")


def bench_command(args: argparse.Namespace) -> int:
    out, err = sys.stdout, sys.stderr
    modes = parse_modes(args.modes)
    levels = parse_concurrency(args.concurrency)
    spec = engine_spec_of(args)
    graph = load_strategy(args.program, parse_overrides(args.params))
    directory = Path(args.output) if args.output else None
    trace_dir = Path(args.trace) if args.trace else None
    plot_dir = Path(args.plot) if args.plot else None
    for flag, path in (("-o", directory), ("--trace", trace_dir), ("--plot", plot_dir)):
        _refuse_file(flag, path)
    dataset = read_dataset(_at(args, levels[0]), err=err)
    baseline = "sync" if "sync" in modes else modes[0]
    results: list[BenchLevel] = []
    for level in levels:
        # With several levels each gets its own sub-directory, so no level overwrites another.
        sub = f"c{level}" if len(levels) > 1 else ""
        results.append(
            _bench_level(
                _at(args, level),
                graph,
                spec,
                dataset,
                modes,
                baseline,
                output=directory / sub if directory else None,
                trace_dir=trace_dir / sub if trace_dir else None,
            )
        )
    report = _report(args, spec, graph.strategy, baseline, levels, results)
    report["engine_name"] = next(iter(results[0].runs.values())).engine_name
    report["dataset"] = dataset.path
    report["queries"] = len(dataset.queries)
    if directory is not None:
        (directory / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    if plot_dir is not None:
        from runtime.plots import write_bench_plots

        levels_runs = {r.concurrency: r.runs for r in results}
        written = write_bench_plots(report, levels_runs, plot_dir, clock=spec.clock_name)
        if not args.quiet:
            print(f"spex: wrote {len(written)} plot files to {plot_dir}", file=err)
    if args.json:
        print(json.dumps(report, indent=2), file=out)
    else:
        for outcome in results:
            print(
                f"{graph.strategy} on {len(dataset.queries)} queries, engine {spec.text}, "
                f"concurrency {outcome.concurrency}; speedup and agreement vs {baseline} "
                f"({spec.clock_name}){_oracle_note(baseline)}",
                file=out,
            )
            print(format_table(BENCH_HEADERS, bench_rows(outcome.comparisons)), file=out)
            for mode, run in outcome.runs.items():
                if run.stats is not None and run.stats.speculation is not None:
                    print(f"{mode}: {run.stats.speculation}", file=out)
    return max(_report_failures(outcome.runs, err) for outcome in results)


def _oracle_note(baseline: str) -> str:
    if baseline != "sync":
        return ""
    return "; oracle = sync latency / perfect-foresight latency, gap closed = median/pooled"


def _at(args: argparse.Namespace, concurrency: int) -> argparse.Namespace:
    """The arguments with one concurrency level, as the shared run code expects them."""
    level = copy.copy(args)
    level.concurrency = concurrency
    return level


def _bench_level(
    args: argparse.Namespace,
    graph: StrategyGraph,
    spec: EngineSpec,
    dataset: Dataset,
    modes: Sequence[str],
    baseline: str,
    *,
    output: Path | None,
    trace_dir: Path | None,
) -> BenchLevel:
    """Run every mode at args.concurrency and compare them with the baseline and the oracle."""
    err = sys.stderr
    runs: dict[str, EngineRun] = {}
    collector = TraceCollector() if baseline == "sync" and len(modes) > 1 else None
    # Each mode's kept trees, to tell whether it built the baseline's (exact speculation must).
    kept: dict[str, KeptTrees] = {m: KeptTrees() for m in modes} if len(modes) > 1 else {}
    for mode in modes:
        label = f"{mode} c={args.concurrency}"
        progress = ProgressBar(len(dataset.queries), err, enabled=not args.quiet, label=label)
        if output is not None:
            output.mkdir(parents=True, exist_ok=True)
        writer = ResultsWriter(output / f"{mode}.jsonl", append=False) if output else None
        file_sink = TraceFileSink(trace_dir / mode) if trace_dir else None
        sinks = [
            s
            for s in (file_sink, collector if mode == baseline else None, kept.get(mode))
            if s is not None
        ]
        manifest = _manifest(args, graph, spec, dataset, mode)
        if file_sink is not None:
            file_sink.write_manifest(manifest, status="running")

        def on_result(
            result: QueryResult,
            *,
            bar: ProgressBar = progress,
            sink: ResultsWriter | None = writer,
        ) -> None:
            if sink is not None:
                sink.write(result)
            bar.advance(failed=result.status != "ok", correct=result.correct)

        try:
            runs[mode] = run = execute(
                graph,
                spec,
                args,
                dataset.queries,
                mode,
                on_result,
                _TeeSink(*sinks) if sinks else None,
            )
        finally:
            progress.close()
            if writer is not None:
                writer.close()
            if file_sink is not None:
                file_sink.close()
        if file_sink is not None:
            summary = summarize(run.results, wall_s=run.wall_s, engine_s=run.engine_s)
            file_sink.write_manifest(
                manifest,
                status="finished" if run.engine_error is None else "failed",
                engine_name=run.engine_name,
                summary=summary.to_json(),
            )
    summaries: dict[str, RunSummary] = {
        m: summarize(r.results, wall_s=r.wall_s, engine_s=r.engine_s) for m, r in runs.items()
    }
    comparisons = compare_modes(baseline, summaries, {m: r.results for m, r in runs.items()})
    if collector is not None:
        oracle = oracle_latencies(collector.queries)
        base_rows = runs[baseline].results
        comparisons = [
            c.with_oracle(compare_to_oracle(oracle, base_rows, runs[c.mode].results))
            for c in comparisons
        ]
    if kept:
        comparisons = [
            c.with_trees(compare_trees(kept[baseline].trees, kept[c.mode].trees))
            for c in comparisons
        ]
    return BenchLevel(args.concurrency, runs, comparisons)


def _manifest(
    args: argparse.Namespace,
    graph: StrategyGraph,
    spec: EngineSpec,
    dataset: Dataset,
    mode: str,
) -> RunManifest:
    return RunManifest(
        program=args.program,
        strategy=graph.strategy,
        parameters={p.name: p.value for p in graph.params},
        engine=spec.text,
        engine_options=engine_options(spec, args),
        mode=mode,
        concurrency=args.concurrency,
        dataset=dataset.path,
        base_seed=args.seed,
        query_seeds={q.query_id: q.seed for q in dataset.queries},
        command_line=tuple(getattr(args, "command_line", ())),
        extra={"bench": True, "limit": args.limit, "repeat": args.repeat},
    )


def _report(
    args: argparse.Namespace,
    spec: EngineSpec,
    strategy: str,
    baseline: str,
    levels: Sequence[int],
    results: Sequence[BenchLevel],
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "spex_version": __version__,
        "program": args.program,
        "strategy": strategy,
        "parameters": parse_overrides(args.params),
        "engine": spec.text,
        "engine_options": engine_options(spec, args),
        "concurrency": levels[0] if len(levels) == 1 else list(levels),
        "seed": args.seed,
        "baseline": baseline,
    }
    if len(results) == 1:
        report["modes"] = _modes_json(results[0])
    report["runs"] = [{"concurrency": r.concurrency, "modes": _modes_json(r)} for r in results]
    return report


def _modes_json(level: BenchLevel) -> list[dict[str, Any]]:
    """Each mode's comparison, with the line that says whether (and why not) it speculated."""
    out = []
    for c in level.comparisons:
        stats = level.runs[c.mode].stats
        out.append({**c.to_json(), "speculation": stats.speculation if stats else None})
    return out


def _report_failures(runs: dict[str, EngineRun], err: Any) -> int:
    code = 0
    for mode, run in runs.items():
        failed = [r for r in run.results if r.status != "ok"]
        messages = sorted({r.error or "unknown error" for r in failed})
        if run.engine_error is not None and run.engine_error not in messages:
            messages.append(run.engine_error)
        # A dead server fails every query with a slightly different message: show a few.
        for message in messages[:MAX_ERRORS_SHOWN]:
            print(f"spex: {mode}: error: {message}", file=err)
        if len(messages) > MAX_ERRORS_SHOWN:
            rest = len(messages) - MAX_ERRORS_SHOWN
            print(f"spex: {mode}: {rest} more distinct errors", file=err)
        if failed or run.engine_error is not None:
            code = 1
    return code

"""`spex bench`: run one strategy in several modes side by side and compare them.

Every mode runs the same queries with the same seeds on a fresh engine instance of the same kind
and settings, at the same concurrency, so no cache leaks from one mode into the next and the
baseline is honest: the only difference between `sync` and `spec` is speculation. The table shows
latency, throughput, tokens, waste, hit rate, accuracy, the speedup over the baseline on the
engine clock, and how often each mode's answer equals the baseline's (exact speculation: 100%).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
from runtime.engines.factory import engine_options
from runtime.progress import ProgressBar
from runtime.records import QueryResult
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
from spexlang.diagnostics import UserError
from spexlang.version import __version__


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="compare sync and speculative modes on the same queries",
        description=(
            "Run a strategy in several modes on the same questions and seeds, each on a fresh "
            "engine of the same kind, and compare latency, throughput, waste and answers."
        ),
    )
    add_common_arguments(parser)
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


def bench_command(args: argparse.Namespace) -> int:
    out, err = sys.stdout, sys.stderr
    modes = parse_modes(args.modes)
    spec = engine_spec_of(args)
    graph = load_strategy(args.program, parse_overrides(args.params))
    dataset = read_dataset(args, err=err)
    directory = Path(args.output) if args.output else None
    if directory is not None and directory.exists() and not directory.is_dir():
        raise UserError(f"-o {directory} is a file; spex bench writes a directory")
    baseline = "sync" if "sync" in modes else modes[0]
    runs: dict[str, EngineRun] = {}
    for mode in modes:
        progress = ProgressBar(len(dataset.queries), err, enabled=not args.quiet, label=mode)
        writer = ResultsWriter(directory / f"{mode}.jsonl", append=False) if directory else None

        def on_result(
            result: QueryResult,
            *,
            bar: ProgressBar = progress,
            sink: ResultsWriter | None = writer,
        ) -> None:
            if sink is not None:
                sink.write(result)
            bar.advance(failed=result.status != "ok")

        try:
            runs[mode] = execute(graph, spec, args, dataset.queries, mode, on_result)
        finally:
            progress.close()
            if writer is not None:
                writer.close()
    summaries: dict[str, RunSummary] = {
        m: summarize(r.results, wall_s=r.wall_s, engine_s=r.engine_s) for m, r in runs.items()
    }
    comparisons = compare_modes(baseline, summaries, {m: r.results for m, r in runs.items()})
    report = _report(
        args, spec.text, engine_options(spec, args), graph.strategy, baseline, comparisons
    )
    report["engine_name"] = next(iter(runs.values())).engine_name
    report["dataset"] = dataset.path
    report["queries"] = len(dataset.queries)
    if directory is not None:
        (directory / "bench.json").write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        print(json.dumps(report, indent=2), file=out)
    else:
        print(
            f"{graph.strategy} on {len(dataset.queries)} queries, engine {spec.text}, "
            f"concurrency {args.concurrency}; speedup and agreement vs {baseline} "
            f"({spec.clock_name})",
            file=out,
        )
        print(format_table(BENCH_HEADERS, bench_rows(comparisons)), file=out)
    return _report_failures(runs, err)


def _report(
    args: argparse.Namespace,
    engine: str,
    options: dict[str, object],
    strategy: str,
    baseline: str,
    comparisons: Sequence[ModeComparison],
) -> dict[str, Any]:
    return {
        "spex_version": __version__,
        "program": args.program,
        "strategy": strategy,
        "parameters": parse_overrides(args.params),
        "engine": engine,
        "engine_options": options,
        "concurrency": args.concurrency,
        "seed": args.seed,
        "baseline": baseline,
        "modes": [c.to_json() for c in comparisons],
    }


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

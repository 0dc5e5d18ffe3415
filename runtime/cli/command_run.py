"""`spex run`: run a compiled strategy over a dataset on an engine, write results, print a summary.

Without `--engine` it runs the embedded local CPU model on the built-in arithmetic sample and
prints each question with the chosen answer and the reference. Every finished query is appended
to the `-o` results file at once; `--resume` re-runs only the queries without an ok row. Engine
failures are counted per query, their message printed once, and the exit code is 1 if any query
failed. The shared pieces (flags, loading, one engine run) are also used by `spex bench`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from runtime.datasets import (
    BUILTIN_SAMPLE,
    BadRowPolicy,
    Dataset,
    DatasetOptions,
    DatasetQuery,
    load_dataset,
)
from runtime.engines.factory import (
    DEFAULT_ENGINE,
    EngineSpec,
    add_engine_arguments,
    bindings_of,
    check_bound_roles,
    check_engine_serves,
    create_engine,
    create_role_engines,
    engine_label,
    engine_options,
    parse_engine_spec,
    run_clock_name,
    run_on_clock,
    uses_virtual_clock,
)
from runtime.engines.protocol import EngineError
from runtime.progress import ProgressBar
from runtime.records import QueryResult
from runtime.report import RunSummary, format_summary, summarize
from runtime.results import (
    ResultsWriter,
    check_questions,
    plan_resume,
    read_results,
    rewrite_atomically,
)
from runtime.tracefile import RunManifest, TraceFileSink
from spexlang.diagnostics import UserError

if TYPE_CHECKING:
    from compiler.ir import StrategyGraph

MODES = ("sync", "spec", "spec+et")
MAX_BAD_ROWS_SHOWN = 10
# Messages name the failed request, so a server that dies fails each query with its own text:
# show a few in full rather than one line per query.
MAX_ERRORS_SHOWN = 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a strategy over a dataset",
        description=(
            "Run a .spx strategy over the questions of a dataset. Without --engine, the "
            "embedded local CPU model answers the built-in arithmetic sample."
        ),
    )
    add_common_arguments(parser)
    parser.add_argument("--mode", choices=MODES, default="spec", help="default: spec")
    parser.add_argument("-o", "--output", metavar="FILE", help="results JSONL, one row per query")
    parser.add_argument("--trace", metavar="DIR", help="write DIR/trace.jsonl and DIR/run.json")
    parser.add_argument(
        "--resume", action="store_true", help="keep the ok rows of -o FILE, run the rest"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the final summary")
    parser.set_defaults(func=run_command)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags `spex run` and `spex bench` share: program, dataset, engine, seeds, options."""
    parser.add_argument(
        "program",
        metavar="PROGRAM",
        help="a .spx strategy file, or the compiled graph of one (spex compile -o g.json)",
    )
    parser.add_argument(
        "-p",
        dest="params",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a strategy parameter (repeatable)",
    )
    data = parser.add_argument_group("dataset")
    data.add_argument(
        "--dataset",
        metavar="FILE",
        help="JSONL: MATH-500, GSM8K or {question, answer} rows; default: built-in sample",
    )
    data.add_argument("--limit", type=int, metavar="N", help="use the first N rows")
    data.add_argument(
        "--repeat", type=int, default=1, metavar="K", help="run each row K times, other seeds"
    )
    data.add_argument("--question-field", metavar="NAME", help="the field holding the question")
    data.add_argument("--answer-field", metavar="NAME", help="the field holding the answer")
    data.add_argument(
        "--on-bad-row",
        choices=[p.value for p in BadRowPolicy],
        default=BadRowPolicy.SKIP.value,
        help="skip a malformed row with a warning (default) or stop",
    )
    data.add_argument("--seed", type=int, default=0, metavar="S", help="base seed (default 0)")
    execution = parser.add_argument_group("execution")
    execution.add_argument(
        "--concurrency", type=int, default=8, metavar="C", help="queries in flight (default 8)"
    )
    execution.add_argument(
        "--lookahead", type=int, default=None, metavar="L", help="speculative layers ahead"
    )
    execution.add_argument(
        "--budget-factor",
        type=float,
        default=None,
        metavar="F",
        help="global speculative budget, as a multiple of the main-path width",
    )
    execution.add_argument(
        "--et-alpha",
        type=float,
        default=None,
        metavar="A",
        help="spec+et: stop when the lead > A x leaves to come x the runner-up's mean (default 1)",
    )
    execution.add_argument(
        "--et-confidence",
        type=float,
        default=None,
        metavar="C",
        help="spec+et: the leading answer's median leaf weight must exceed C (default 0.9)",
    )
    execution.add_argument(
        "--relaxed",
        action="store_true",
        help="let speculative nodes join the tree (not exact: answers may differ from sync)",
    )
    add_engine_arguments(parser)


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    overrides: dict[str, str] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise UserError(f"-p expects NAME=VALUE, got '{item}'")
        overrides[name.strip()] = value.strip()
    return overrides


def load_strategy(program: str, overrides: dict[str, str]) -> StrategyGraph:
    """Compile the program file with the -p overrides (CompileError is a UserError), or read the
    compiled graph (JSON) it is."""
    path = Path(program)
    if not path.is_file():
        raise UserError(f"program file not found: {program}")
    from compiler.graph_json import looks_like_graph_json, read_graph

    if looks_like_graph_json(path):
        if overrides:
            raise UserError(
                f"-p cannot change {program}: a compiled graph has its parameters folded in; "
                f"compile the .spx with them instead (spex compile PROGRAM.spx -p NAME=VALUE -o "
                f"{path.name})"
            )
        return read_graph(path)
    from compiler.load import load_program

    return load_program(path, overrides)


def read_dataset(args: argparse.Namespace, *, err: TextIO) -> Dataset:
    """Load --dataset (or the built-in sample) and warn about skipped rows on stderr."""
    if args.concurrency < 1:
        raise UserError(f"--concurrency must be at least 1, got {args.concurrency}")
    options = DatasetOptions(
        limit=args.limit,
        repeat=args.repeat,
        seed=args.seed,
        question_field=args.question_field,
        answer_field=args.answer_field,
        on_bad_row=BadRowPolicy(args.on_bad_row),
    )
    dataset = load_dataset(args.dataset or BUILTIN_SAMPLE, options)
    for bad in dataset.skipped[:MAX_BAD_ROWS_SHOWN]:
        print(f"spex: warning: {bad.render()}; row skipped", file=err)
    if len(dataset.skipped) > MAX_BAD_ROWS_SHOWN:
        more = len(dataset.skipped) - MAX_BAD_ROWS_SHOWN
        print(f"spex: warning: {more} more malformed rows skipped", file=err)
    return dataset


def engine_spec_of(args: argparse.Namespace) -> EngineSpec:
    return parse_engine_spec(args.engine or DEFAULT_ENGINE)


@dataclass(frozen=True)
class EngineRun:
    """What one engine session produced."""

    results: tuple[QueryResult, ...]
    engine_s: float  # engine-clock span of the session
    wall_s: float
    engine_error: str | None  # set when the engine failed the whole session
    engine_name: str  # what the engine calls itself, e.g. "sim:h100-7b"


def execute(
    graph: StrategyGraph,
    spec: EngineSpec,
    args: argparse.Namespace,
    queries: Sequence[DatasetQuery],
    mode: str,
    on_result: Callable[[QueryResult], None],
    trace: TraceFileSink | None = None,
) -> EngineRun:
    """Run the queries on a fresh engine instance; results reach `on_result` as they finish."""
    from runtime.executor.api import Mode, Query, SpecOptions, run_queries

    finished: list[QueryResult] = []

    def collect(result: QueryResult) -> None:
        finished.append(result)
        on_result(result)

    option_values = {
        "lookahead": args.lookahead,
        "budget_factor": args.budget_factor,
        "relaxed": args.relaxed or None,
        "et_alpha": args.et_alpha,
        "et_confidence": args.et_confidence,
    }
    if args.et_alpha is not None and not args.et_alpha >= 0:
        raise UserError(f"--et-alpha must be at least 0, got {args.et_alpha}")
    if args.et_confidence is not None and not 0 <= args.et_confidence <= 1:
        raise UserError(f"--et-confidence must be between 0 and 1, got {args.et_confidence}")
    options = SpecOptions(**{k: v for k, v in option_values.items() if v is not None})
    answers = {q.question: q.reference for q in queries}
    bindings = bindings_of(args)
    if bindings:  # roles bound to engines of their own: one router over all of them
        engine = create_role_engines(graph, bindings, default=spec, options=args, answers=answers)
    else:
        engine = create_engine(spec, args, answers)
        check_engine_serves(graph, engine, spec.text)
    batch = [Query(q.query_id, q.question, q.reference, q.seed) for q in queries]
    span = [0.0, 0.0]

    async def session() -> None:
        await engine.start()
        span[0] = span[1] = engine.now()
        try:
            await run_queries(
                graph,
                engine,
                batch,
                mode=Mode(mode),
                concurrency=args.concurrency,
                options=options,
                on_result=collect,
                trace=trace,
            )
        finally:
            span[1] = engine.now()
            await engine.close()

    started = time.monotonic()
    error: str | None = None
    try:
        run_on_clock(uses_virtual_clock(graph, spec, bindings), session())
    except EngineError as e:
        error = str(e) or type(e).__name__
    wall = time.monotonic() - started
    name = str(getattr(engine, "name", spec.text))
    return EngineRun(tuple(finished), span[1] - span[0], wall, error, name)


def _one_line(text: str | None, width: int = 100) -> str:
    if text is None:
        return "-"
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def show_result(result: QueryResult, out: TextIO) -> None:
    """The per-query lines printed when there is no results file to look at."""
    verdict = {True: "correct", False: "wrong", None: "no reference"}[result.correct]
    if result.status != "ok":
        verdict = "failed"
    print(f"[{result.query_id}] {_one_line(result.question)}", file=out)
    print(
        f"    answer: {_one_line(result.answer, 60)}   reference: "
        f"{_one_line(result.reference, 60)}   {verdict}",
        file=out,
    )


def run_command(args: argparse.Namespace) -> int:
    out, err = sys.stdout, sys.stderr
    spec = engine_spec_of(args)
    if args.resume and not args.output:
        raise UserError("--resume needs -o FILE: the results file of the run to continue")
    graph = load_strategy(args.program, parse_overrides(args.params))
    check_bound_roles(graph, bindings_of(args))
    dataset = read_dataset(args, err=err)
    queries = dataset.queries
    kept: tuple[QueryResult, ...] = ()
    if args.resume:
        existing = read_results(args.output)
        if existing.truncated_last_line:
            print(f"spex: {args.output}: ignoring a truncated last line", file=err)
        plan = plan_resume(existing, [q.query_id for q in queries], args.mode)
        check_questions(plan.kept, {q.query_id: q.question for q in queries}, args.output)
        kept = plan.kept
        todo = set(plan.to_run)
        queries = tuple(q for q in queries if q.query_id in todo)
        # Drop failed and cut-off rows now, so the finished file has one row per query.
        rewrite_atomically(args.output, [r for r in existing.rows.values() if r.status == "ok"])
        if not args.quiet:
            print(
                f"spex: resuming {args.output}: {len(kept)} done, {len(queries)} to run "
                f"({plan.retried_failed} failed before)",
                file=err,
            )
    show = not args.output and not args.quiet
    if not args.quiet:
        print(
            f"spex: {graph.strategy} on {len(queries)} {_queries(len(queries))} "
            f"from {dataset.path} "
            f"(engine {engine_label(spec, bindings_of(args))}, mode {args.mode}, "
            f"concurrency {args.concurrency})",
            file=err,
        )
    writer = ResultsWriter(args.output, append=args.resume) if args.output else None
    trace = TraceFileSink(args.trace, append=args.resume) if args.trace else None
    manifest = _manifest(args, graph, spec, dataset, queries)
    progress = ProgressBar(len(queries), err, enabled=not args.quiet and not show)

    def on_result(result: QueryResult) -> None:
        if writer is not None:
            writer.write(result)
        progress.advance(failed=result.status != "ok", correct=result.correct)
        if show:
            show_result(result, out)

    outcome = EngineRun((), 0.0, 0.0, None, spec.text)
    try:
        if trace is not None:
            trace.write_manifest(manifest, status="running")
        if queries:
            outcome = execute(graph, spec, args, queries, args.mode, on_result, trace)
    finally:
        progress.close()
        if writer is not None:
            writer.close()
        if trace is not None:
            trace.close()
    results = [*kept, *outcome.results]
    summary = summarize(results, wall_s=outcome.wall_s, engine_s=outcome.engine_s)
    if trace is not None:
        trace.write_manifest(
            manifest,
            status="finished",
            engine_name=outcome.engine_name,
            summary=summary.to_json(),
        )
    if results:
        clock = run_clock_name(graph, spec, bindings_of(args))
        print(format_summary(summary, clock=clock), file=out)
    return _report_failures(args, summary, outcome, len(queries), err)


def _report_failures(
    args: argparse.Namespace, summary: RunSummary, outcome: EngineRun, ran: int, err: TextIO
) -> int:
    """Print the first few distinct failures, count the rest, say how to retry; the exit code."""
    for message, count in summary.errors[:MAX_ERRORS_SHOWN]:
        print(f"spex: error ({count} {_queries(count)}): {message}", file=err)
    rest = summary.errors[MAX_ERRORS_SHOWN:]
    if rest:
        more = sum(count for _, count in rest)
        where = (
            f"; the error field of each failed row in {args.output} says why" if args.output else ""
        )
        kinds = "another message" if len(rest) == 1 else f"{len(rest)} other messages"
        print(f"spex: {more} more {_queries(more)} failed with {kinds}{where}", file=err)
    missing = ran - len(outcome.results)
    if outcome.engine_error is not None and outcome.engine_error not in dict(summary.errors):
        print(f"spex: engine failed: {outcome.engine_error}", file=err)
    unfinished = summary.failed + missing
    if unfinished == 0 and outcome.engine_error is None:
        return 0
    what = f"spex: {unfinished} {_queries(unfinished)} did not finish"
    if args.output:
        saved = f"; the {summary.ok} that did are saved in {args.output}" if summary.ok else ""
        print(
            f"{what}{saved}. Re-run the same command with --resume to run only the rest.",
            file=err,
        )
    else:
        print(f"{what}; use -o FILE to keep results and --resume to retry the rest.", file=err)
    return 1


def _queries(n: int) -> str:
    return "query" if n == 1 else "queries"


def _manifest(
    args: argparse.Namespace,
    graph: StrategyGraph,
    spec: EngineSpec,
    dataset: Dataset,
    queries: Sequence[DatasetQuery],
) -> RunManifest:
    return RunManifest(
        program=args.program,
        strategy=graph.strategy,
        parameters={p.name: p.value for p in graph.params},
        engine=engine_label(spec, bindings_of(args)),
        engine_options=engine_options(spec, args),
        mode=args.mode,
        concurrency=args.concurrency,
        dataset=dataset.path,
        base_seed=args.seed,
        query_seeds={q.query_id: q.seed for q in queries},
        command_line=tuple(args.command_line),
        extra={"dataset_format": dataset.format.value, "limit": args.limit, "repeat": args.repeat},
    )

"""`spex run`: run a compiled strategy over a dataset on an engine, write results, print a summary.

Without `--engine` it runs the embedded local CPU model on the built-in arithmetic sample and
prints each question with the chosen answer and the reference. Every finished query is appended
to the `-o` results file at once; `--resume` re-runs only the queries without an ok row. Engine
failures are counted per query, their message printed once, and the exit code is 1 if any query
failed. The shared pieces (flags, loading, one engine run) are also used by `spex bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from runtime.cli.option_checks import capped_concurrency, check_numeric_options
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
    ResultsFile,
    ResultsWriter,
    check_questions,
    plan_resume,
    read_results,
    rewrite_atomically,
)
from runtime.run_record import (
    OPERATIONAL_ENGINE_OPTIONS,
    identity_differences,
    keeps_record,
    program_hash,
    read_record,
    write_record,
)
from runtime.tracefile import RUN_FILE, TRACE_FILE, RunManifest, TraceFileSink
from spexlang.diagnostics import UserError

if TYPE_CHECKING:
    from compiler.ir import StrategyGraph
    from runtime.executor.api import RunStats, TraceSink

MODES = ("sync", "spec", "spec+et")
DEFAULT_CONCURRENCY = 8
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
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing -o FILE (and --trace DIR) instead of refusing to",
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
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="C",
        help=f"queries in flight (default {DEFAULT_CONCURRENCY}, at most the number of queries)",
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
    check_numeric_options(args)
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
    stats: RunStats | None = None  # the executor's totals (budget cap M, grants), when it ran


def execute(
    graph: StrategyGraph,
    spec: EngineSpec,
    args: argparse.Namespace,
    queries: Sequence[DatasetQuery],
    mode: str,
    on_result: Callable[[QueryResult], None],
    trace: TraceSink | None = None,
    on_started: Callable[[], TraceSink | None] | None = None,
) -> EngineRun:
    """Run the queries on a fresh engine instance; results reach `on_result` as they finish.

    `on_started` runs once the engine has started, before the first query: the moment files may
    be opened for writing (an engine that cannot start must not cost the user a results file);
    the trace sink it returns, if any, is the run's."""
    from runtime.executor.api import Mode, Query, SpecOptions, run_queries

    finished: list[QueryResult] = []

    def collect(result: QueryResult) -> None:
        result = _refuse_empty_search(result)
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
    concurrency, _ = capped_concurrency(args.concurrency, len(batch))
    stats: list[RunStats] = []

    async def session() -> None:
        with _signals_cancel(asyncio.current_task()) as interrupted:
            try:
                await run_session()
            except asyncio.CancelledError:
                if interrupted:
                    raise _Interrupted from None
                raise

    async def run_session() -> None:
        await engine.start()
        span[0] = span[1] = engine.now()
        try:
            sink = on_started() if on_started is not None else None
            stats.append(
                await run_queries(
                    graph,
                    engine,
                    batch,
                    mode=Mode(mode),
                    concurrency=concurrency,
                    options=options,
                    on_result=collect,
                    trace=sink if sink is not None else trace,
                )
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
    except _Interrupted:
        raise KeyboardInterrupt from None
    wall = time.monotonic() - started
    name = str(getattr(engine, "name", spec.text))
    return EngineRun(
        tuple(finished), span[1] - span[0], wall, error, name, stats[0] if stats else None
    )


class _Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped the session (an ordinary exception inside the loop)."""


@contextmanager
def _signals_cancel(task: asyncio.Task[Any] | None) -> Iterator[list[int]]:
    """While the engine session runs, SIGINT and SIGTERM cancel it: the executor then aborts
    its requests and closes the engine in order. A KeyboardInterrupt raised at a random point
    of the loop (in a timer, in a garbage collector callback) could instead be lost or leave
    tasks whose errors asyncio prints. Yields the list of signals received."""
    received: list[int] = []
    loop = asyncio.get_running_loop()
    installed: list[int] = []

    def stop(signum: int) -> None:
        received.append(signum)
        if task is not None:
            task.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    try:
        yield received
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)


def _refuse_empty_search(result: QueryResult) -> QueryResult:
    """A query "ok" without a single generate call searched nothing (a count parameter of 0
    that slipped past the compiler): report it as failed rather than as an empty answer."""
    if result.status != "ok" or result.generate_calls > 0:
        return result
    return replace(
        result,
        status="failed",
        answer=None,
        correct=None,
        error="the strategy generated nothing for this query: check that its width and "
        "count parameters (-p) are at least 1",
    )


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
    check_numeric_options(args)
    spec = engine_spec_of(args)
    if args.resume and not args.output:
        raise UserError("--resume needs -o FILE: the results file of the run to continue")
    if args.resume and args.overwrite:
        raise UserError("--resume keeps the rows of -o FILE, --overwrite replaces them: pick one")
    graph = load_strategy(args.program, parse_overrides(args.params))
    check_bound_roles(graph, bindings_of(args))
    dataset = read_dataset(args, err=err)
    if args.output:
        check_output_is_safe(args, dataset)
    if args.trace and not (args.resume or args.overwrite):
        check_trace_is_new(args.trace)
    identity = run_identity(graph, args, spec, dataset)
    queries = dataset.queries
    kept: tuple[QueryResult, ...] = ()
    existing: ResultsFile | None = None
    if args.resume:
        existing = read_results(args.output)
        check_same_run(args.output, existing, identity, err)
        if existing.truncated_last_line:
            print(f"spex: {args.output}: ignoring a truncated last line", file=err)
        if existing.unreadable_lines:
            lines = ", ".join(str(n) for n in existing.unreadable_lines[:5])
            print(
                f"spex: warning: {args.output}: line(s) {lines} are not valid result rows; "
                "their queries run again",
                file=err,
            )
        plan = plan_resume(existing, [q.query_id for q in queries], args.mode)
        check_questions(plan.kept, {q.query_id: q.question for q in queries}, args.output)
        kept = plan.kept
        todo = set(plan.to_run)
        queries = tuple(q for q in queries if q.query_id in todo)
        if not args.quiet:
            print(
                f"spex: resuming {args.output}: {len(kept)} done, {len(queries)} to run "
                f"({plan.retried_failed} failed before)",
                file=err,
            )
    concurrency, note = capped_concurrency(args.concurrency, len(queries))
    if note and not args.quiet and args.concurrency != DEFAULT_CONCURRENCY:
        print(f"spex: note: {note}", file=err)
    show = not args.output and not args.quiet
    if not args.quiet:
        print(
            f"spex: {graph.strategy} on {len(queries)} {_queries(len(queries))} "
            f"from {dataset.path} "
            f"(engine {engine_label(spec, bindings_of(args))}, mode {args.mode}, "
            f"concurrency {concurrency})",
            file=err,
        )
    files = _RunFiles(args, _manifest(args, graph, spec, dataset, queries, identity), identity)
    progress = ProgressBar(len(queries), err, enabled=not args.quiet and not show)

    def on_started() -> TraceSink | None:
        files.open(existing)
        return files.trace

    def on_result(result: QueryResult) -> None:
        if files.writer is not None:
            files.writer.write(result)
        progress.advance(failed=result.status != "ok", correct=result.correct)
        if show:
            show_result(result, out)

    outcome = EngineRun((), 0.0, 0.0, None, spec.text)
    try:
        with _sigterm_as_interrupt():
            if queries:
                outcome = execute(
                    graph, spec, args, queries, args.mode, on_result, on_started=on_started
                )
    except KeyboardInterrupt:
        progress.close()
        files.close()
        files.finish("interrupted", outcome)
        saved = files.writer.written + len(kept) if files.writer is not None else len(kept)
        where = (
            f"; {saved} finished {_queries(saved)} {'is' if saved == 1 else 'are'} saved in "
            f"{args.output}: resume with --resume"
            if args.output
            else "; use -o FILE to keep results, and resume with --resume"
        )
        print(f"spex: interrupted{where}", file=err)
        return 130
    except BaseException:
        progress.close()
        files.close()
        files.finish("failed", outcome)
        raise
    progress.close()
    files.close()
    results = [*kept, *outcome.results]
    summary = summarize(results, wall_s=outcome.wall_s, engine_s=outcome.engine_s)
    failed = outcome.engine_error is not None or summary.failed > 0
    files.finish("failed" if failed else "finished", outcome, summary)
    if results:
        clock = run_clock_name(graph, spec, bindings_of(args))
        print(format_summary(summary, clock=clock), file=out)
        if outcome.stats is not None and outcome.stats.speculation is not None:
            print(outcome.stats.speculation, file=out)
        if outcome.stats is not None and not args.quiet:
            print(_budget_line(outcome.stats), file=out)
    return _report_failures(args, summary, outcome, len(queries), err)


class _RunFiles:
    """The files a run writes (results, their run record, the trace directory), opened only
    once the engine has started, and the record's final status."""

    def __init__(
        self, args: argparse.Namespace, manifest: RunManifest, identity: dict[str, Any]
    ) -> None:
        self.args = args
        self.manifest = manifest
        self.identity = identity
        self.writer: ResultsWriter | None = None
        self.trace: TraceFileSink | None = None
        self.record = bool(args.output) and keeps_record(args.output)

    def open(self, existing: ResultsFile | None) -> None:
        args = self.args
        if args.output:
            if self.record:
                write_record(args.output, self._record_body("running"))
            if existing is not None and (existing.rows or existing.truncated_last_line):
                # Drop failed and cut-off rows now, so the finished file has one row per query.
                ok = [r for r in existing.rows.values() if r.status == "ok"]
                rewrite_atomically(args.output, ok)
            self.writer = ResultsWriter(args.output, append=args.resume)
        if args.trace:
            self.trace = TraceFileSink(args.trace, append=args.resume)
            self.trace.write_manifest(self.manifest, status="running")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.trace is not None:
            self.trace.close()

    def finish(self, status: str, outcome: EngineRun, summary: RunSummary | None = None) -> None:
        """Record how the run ended: finished, interrupted or failed (never left running)."""
        extra: dict[str, Any] = {"engine_name": outcome.engine_name}
        if outcome.stats is not None:
            extra["budget"] = _budget_record(outcome.stats)
        if summary is not None:
            extra["summary"] = summary.to_json()
        if outcome.engine_error is not None:
            extra["engine_error"] = outcome.engine_error
        try:
            if self.record and self.writer is not None:
                write_record(self.args.output, self._record_body(status, extra))
            if self.trace is not None:
                self.trace.write_manifest(self.manifest, status=status, **extra)
        except (UserError, OSError) as e:
            message = e.message if isinstance(e, UserError) else str(e)
            print(f"spex: warning: {message}", file=sys.stderr)

    def _record_body(self, status: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "status": status,
            "results": self.args.output,
            "run": self.manifest.to_json(),
            **(extra or {}),
        }


def _budget_record(stats: RunStats) -> dict[str, int | str | None]:
    """The global budget as run.json records it: the cap M, what the ledger granted and the
    speculation line (why speculation was refused, when it was)."""
    return {
        "cap": stats.budget_cap,
        "spec_granted": stats.spec_requests,
        "spec_refused": stats.spec_refused,
        "max_spec_in_flight": stats.max_spec_in_flight,
        "max_in_flight": stats.max_in_flight,
        "speculation": stats.speculation,
    }


def _budget_line(stats: RunStats) -> str:
    return (
        f"budget: cap M = {stats.budget_cap} policy requests in flight (at most "
        f"{stats.max_in_flight} seen, {stats.max_spec_in_flight} speculative); speculative "
        f"requests granted {stats.spec_requests}, refused {stats.spec_refused}"
    )


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C: rows kept, the record says interrupted."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _same_path(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_output_is_safe(args: argparse.Namespace, dataset: Dataset) -> None:
    """Refuse, before anything is opened, an -o that is an input of the run, a directory, or
    (without --resume or --overwrite) an existing results file."""
    output = Path(args.output)
    if output.is_dir():
        raise UserError(f"-o {args.output} is a directory; give a .jsonl file name")
    inputs = [("the program", args.program), ("the dataset", dataset.path)]
    if args.trace:
        for name in (TRACE_FILE, RUN_FILE):
            inputs.append(("the trace", str(Path(args.trace) / name)))
    for what, path in inputs:
        if _same_path(output, path):
            raise UserError(
                f"-o {args.output} is {what} of this run: writing results there would destroy "
                "it; choose another file"
            )
    if args.resume or args.overwrite:
        return
    try:
        info = output.stat()
    except FileNotFoundError:
        info = None
    except OSError as e:
        raise UserError(f"cannot use -o {args.output}: {e.strerror}") from None
    # An empty file holds nothing to lose; a device or a pipe is written, never replaced.
    if info is not None and output.is_file() and info.st_size > 0:
        rows = len(read_results(output).rows)
        held = f"{rows} result rows" if rows else f"{info.st_size} bytes"
        raise UserError(
            f"results file {args.output} already exists ({held}): pass --resume to continue "
            "it, --overwrite to replace it, or choose another -o"
        )


def check_trace_is_new(directory: str) -> None:
    """A trace directory is protected like a results file: no silent replacement."""
    old = Path(directory) / TRACE_FILE
    if old.is_file() and old.stat().st_size > 0:
        raise UserError(
            f"--trace {directory} already holds a trace: pass --resume to continue it, "
            "--overwrite to replace it, or choose another directory"
        )


def run_identity(
    graph: StrategyGraph, args: argparse.Namespace, spec: EngineSpec, dataset: Dataset
) -> dict[str, Any]:
    """What makes two runs' rows comparable; a resumed run must match it (see run_record)."""
    options = {
        k: v for k, v in engine_options(spec, args).items() if k not in OPERATIONAL_ENGINE_OPTIONS
    }
    return {
        "program_hash": program_hash(graph),
        "strategy": graph.strategy,
        "parameters": {p.name: _plain_value(p.value) for p in graph.params},
        "mode": args.mode,
        "engine": spec.kind if spec.kind == "sglang" else spec.text,
        "engine_options": options,
        "base_seed": args.seed,
        "dataset": Path(dataset.path).name,
        "dataset_format": dataset.format.value,
        "question_field": dataset.fields.question,
        "answer_field": dataset.fields.answer,
        "spec_options": {
            "lookahead": args.lookahead,
            "budget_factor": args.budget_factor,
            "relaxed": bool(args.relaxed),
        },
    }


def _plain_value(value: object) -> object:
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def check_same_run(
    output: str, existing: ResultsFile, identity: dict[str, Any], err: TextIO
) -> None:
    """Refuse to resume a results file written by a run of another configuration."""
    record = read_record(output) if keeps_record(output) else None
    if record is None:
        if existing.rows:
            print(
                f"spex: warning: {output} has no run record ({output}.run.json): only its mode "
                "and questions can be checked against this run",
                file=err,
            )
        return
    differences = identity_differences(record["identity"], identity)
    if differences:
        raise UserError(
            f"{output} holds the results of another run; what differs: "
            + "; ".join(differences)
            + ". Resume with the same command, or write to another file with -o"
        )


def _report_failures(
    args: argparse.Namespace, summary: RunSummary, outcome: EngineRun, ran: int, err: TextIO
) -> int:
    """Print the first few distinct failures, count the rest, say how to retry; the exit code."""
    for message, count in summary.errors[:MAX_ERRORS_SHOWN]:
        if "\n" in message:
            # A located diagnostic (file:line:col: error: ..., its line and a caret) says
            # "error" itself and must start its own line for editors to pick it up.
            print(f"spex: {count} {_queries(count)} failed at:\n{message}", file=err)
        else:
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
    identity: dict[str, Any],
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
        extra={
            "dataset_format": dataset.format.value,
            "limit": args.limit,
            "repeat": args.repeat,
            "program_hash": identity["program_hash"],
        },
    )

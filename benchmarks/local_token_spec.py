"""SPEX speculation and token speculation on the local engine, alone and together.

Four runs of one strategy on the embedded SmolLM2-135M, the same questions, seeds, engine
settings (batching, prefix cache, threads) and concurrency; only the two kinds of speculation
differ:

    (a) sync                      the honest baseline
    (b) spec                      SPEX's exact speculation of the search
    (c) sync + token speculation  n-gram drafts verified per decode step (--draft-tokens K)
    (d) spec + token speculation  both

Each question runs in all four combinations back to back (a fresh engine each, sharing one
loaded model; the order rotates from question to question), so the machine's changing load falls
on all four alike. Per combination: the engine-clock makespan (sum over questions of each run's
span, queries run at concurrency 1 within a question), mean query latency, speedup over (a),
decode steps, draft tokens accepted / drafted, and against (a) the answers that agree and the
kept trees that are identical node by node (ids and step texts).

Writes the table into benchmarks/README.md between the `local-token-spec` markers.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/local_token_spec.py            # 4 questions
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/local_token_spec.py --limit 1 --no-write
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from run_sim_matrix import write_between_markers  # noqa: E402  (benchmarks/ is on the path)

from compiler.ir import StrategyGraph  # noqa: E402
from compiler.load import load_program  # noqa: E402
from runtime.datasets import BUILTIN_SAMPLE, DatasetOptions, load_dataset  # noqa: E402
from runtime.engines.local import LocalEngine, LocalEngineConfig  # noqa: E402
from runtime.engines.local.drafter import DraftCounts  # noqa: E402
from runtime.engines.local.model_store import LoadedModel, load  # noqa: E402
from runtime.executor.api import Mode, Query, run_queries  # noqa: E402
from runtime.records import QueryResult  # noqa: E402
from runtime.tree_identity import KeptTrees, compare_trees  # noqa: E402

README = REPO / "benchmarks" / "README.md"
BEGIN, END = "<!-- local-token-spec:begin -->", "<!-- local-token-spec:end -->"
DEMO_PROGRAM = REPO / "runtime" / "data" / "demo_rebase.spx"


@dataclass(frozen=True)
class Combination:
    label: str
    mode: Mode
    draft_tokens: int


@dataclass
class Totals:
    """One combination over every question."""

    results: list[QueryResult] = field(default_factory=list)
    engine_s: float = 0.0
    counts: DraftCounts = field(default_factory=DraftCounts)
    kept: dict[str, set[str]] = field(default_factory=dict)  # query -> its kept nodes' digests

    def add_counts(self, counts: DraftCounts) -> None:
        self.counts.steps += counts.steps
        self.counts.rows += counts.rows
        self.counts.drafted += counts.drafted
        self.counts.accepted += counts.accepted


def run_one(
    graph: StrategyGraph,
    model: LoadedModel,
    query: Query,
    combination: Combination,
    threads: int,
    draft_blocks: int,
    totals: Totals,
) -> None:
    """One question in one combination on a fresh engine; adds to `totals`."""
    config = LocalEngineConfig(
        threads=threads, draft_tokens=combination.draft_tokens, draft_blocks=draft_blocks
    )
    answers = {query.question: query.reference} if query.reference is not None else {}
    engine = LocalEngine(config, answers=answers, model=model)
    trace = KeptTrees()  # the kept tree: node ids, step texts, answers (runtime.tree_identity)
    span = [0.0, 0.0]

    async def session() -> None:
        await engine.start()
        span[0] = engine.now()
        try:
            await run_queries(
                graph,
                engine,
                [query],
                mode=combination.mode,
                concurrency=1,
                on_result=totals.results.append,
                trace=trace,
            )
        finally:
            span[1] = engine.now()
            totals.add_counts(engine.draft_counts)
            await engine.close()

    asyncio.run(session())
    totals.engine_s += span[1] - span[0]
    totals.kept[query.query_id] = trace.trees.get(query.query_id, set())


def table(combinations: list[Combination], totals: dict[str, Totals], queries: int) -> list[str]:
    base = totals[combinations[0].label]
    base_answers = {r.query_id: r.answer for r in base.results}
    lines = [
        "| combination | engine makespan | mean latency | speedup vs (a) | decode steps "
        "| rows / step | draft tokens accepted / drafted | answers agree with (a) "
        "| identical kept trees |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in combinations:
        t = totals[c.label]
        counts = t.counts
        agree = sum(1 for r in t.results if base_answers.get(r.query_id) == r.answer)
        same_trees = compare_trees(base.kept, t.kept).identical
        drafted = (
            f"{counts.accepted}/{counts.drafted} ({100 * (counts.acceptance or 0):.0f}%)"
            if counts.drafted
            else "-"
        )
        lines.append(
            f"| {c.label} | {t.engine_s:.1f} s "
            f"| {statistics.fmean(r.latency_s for r in t.results):.1f} s "
            f"| {base.engine_s / t.engine_s:.2f}x | {counts.steps} "
            f"| {counts.rows / max(1, counts.steps):.1f} | {drafted} "
            f"| {agree}/{queries} | {same_trees}/{queries} |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--program", type=Path, default=DEMO_PROGRAM)
    parser.add_argument("-p", dest="params", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--limit", type=int, default=4, help="questions of the sample (4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draft-tokens", type=int, default=4, help="K for (c) and (d) (4)")
    parser.add_argument("--draft-blocks", type=int, default=1, help="extra row blocks (1)")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads of every engine (1: see below)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only; leave README alone")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.params)
    graph = load_program(args.program, overrides)
    dataset = load_dataset(BUILTIN_SAMPLE, DatasetOptions(limit=args.limit, seed=args.seed))
    queries = [Query(q.query_id, q.question, q.reference, q.seed) for q in dataset.queries]
    k = args.draft_tokens
    combinations = [
        Combination("(a) sync", Mode.SYNC, 0),
        Combination("(b) spec", Mode.SPEC, 0),
        Combination(f"(c) sync + token spec (K={k})", Mode.SYNC, k),
        Combination(f"(d) spec + token spec (K={k})", Mode.SPEC, k),
    ]
    model = load(None)
    totals = {c.label: Totals() for c in combinations}
    loads = [os.getloadavg()[0]]
    started = time.monotonic()
    for index, query in enumerate(queries):
        turn = index % len(combinations)
        for c in combinations[turn:] + combinations[:turn]:
            run_one(graph, model, query, c, args.threads, args.draft_blocks, totals[c.label])
            loads.append(os.getloadavg()[0])
            print(
                f"question {index + 1}/{len(queries)} {c.label}: {totals[c.label].engine_s:.1f} s "
                f"so far (load {loads[-1]:.1f})",
                flush=True,
            )
    wall = time.monotonic() - started
    params = " ".join(f"-p {name}={value}" for name, value in overrides.items())
    program = args.program.resolve().relative_to(REPO)
    command = (
        "HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/local_token_spec.py"
        + (f" --program {program}" if args.program != DEMO_PROGRAM else "")
        + (f" {params}" if params else "")
        + f" --limit {args.limit} --draft-tokens {k} --draft-blocks {args.draft_blocks}"
        + f" --threads {args.threads}"
    )
    body = "\n".join(
        [
            f"`{program}` ({', '.join(f'{p.name}={p.value}' for p in graph.params)}), "
            f"{len(queries)} questions of the built-in sample, seed {args.seed}, concurrency 1, "
            f"SmolLM2-135M on the CPU with {args.threads} torch thread(s), a fresh engine per "
            f"question and combination (one loaded model); token speculation: up to K={k} "
            f"n-gram draft tokens per sequence and step, within the step's padding rows plus "
            f"{args.draft_blocks} block(s) of 4 rows. Load average during the run "
            f"{min(loads):.1f}-{max(loads):.1f} (shared 2-core machine). {wall:.0f} s of wall "
            "time. Produced by:",
            "",
            f"    {command}",
            "",
            *table(combinations, totals, len(queries)),
        ]
    )
    print(body)
    if not args.no_write:
        write_between_markers(README, BEGIN, END, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

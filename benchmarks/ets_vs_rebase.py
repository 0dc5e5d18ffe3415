"""REBASE vs ETS on the simulated engine: accuracy, tokens, KV cache, and what each layer keeps.

Runs programs/rebase.spx and programs/ets.spx (both width 16, T = 0.2; ETS with the paper's
cost 1/(M+N) per node) on the first N MATH-500 questions, synchronously (so the tree is the
algorithm's alone, without speculation) at concurrency 1, on a fresh `sim:h100-7b` engine each,
with the seeds `spex run` gives the questions. Per algorithm it reports accuracy (reward-weighted
vote), generated tokens, the sim's KV-cache peak (the most tokens the running requests ever held:
their prompts' prefixes, shared ones once, plus their completions), and from the trace, per layer
of a query's tree: the nodes the selection kept (given children), the distinct ancestors those
need, and ETS's own KV measure (tokens of the kept nodes and their distinct ancestors; the
paper's "KV cache size"), averaged over all layers of all queries.

Writes the table into benchmarks/README.md between the `ets-vs-rebase` markers.

    .venv/bin/python benchmarks/ets_vs_rebase.py            # 64 questions
    .venv/bin/python benchmarks/ets_vs_rebase.py -n 8 --no-write
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compiler.load import load_program  # noqa: E402
from runtime.clock import run_virtual  # noqa: E402
from runtime.datasets import query_id, query_seed  # noqa: E402
from runtime.engines.sim import SimEngine  # noqa: E402
from runtime.executor.api import Mode, Query, RunStats, SpecOptions, run_queries  # noqa: E402
from runtime.records import QueryResult, TraceNode, TraceRequest  # noqa: E402

README = REPO / "benchmarks" / "README.md"
BEGIN, END = "<!-- ets-vs-rebase:begin -->", "<!-- ets-vs-rebase:end -->"
DATA_PLACES = (
    REPO.parent / "shared" / "data" / "math500.jsonl",
    Path("/work/shared/data/math500.jsonl"),
)
PROFILE = "h100-7b"


class Nodes:
    """A trace sink that keeps the node records (requests are not needed here)."""

    def __init__(self) -> None:
        self.nodes: list[TraceNode] = []

    def node(self, record: TraceNode) -> None:
        self.nodes.append(record)

    def request(self, record: TraceRequest) -> None:
        pass


@dataclass(frozen=True)
class LayerStats:
    kept: list[int]  # per (query, layer): nodes given children
    ancestors: list[int]  # per (query, layer): distinct ancestors of those
    kv_tokens: list[int]  # per (query, layer): tokens of kept nodes and their ancestors


def layer_stats(nodes: list[TraceNode]) -> LayerStats:
    """Per query and layer d >= 1: which kept nodes of depth d got kept children."""
    by_id = {(n.query_id, n.node_id): n for n in nodes}
    expanded: dict[tuple[str, int], set[str]] = defaultdict(set)
    for n in nodes:
        if n.outcome != "kept" or n.parent_id is None:
            continue
        parent = by_id[(n.query_id, n.parent_id)]
        if parent.depth >= 1:
            expanded[(n.query_id, parent.depth)].add(parent.node_id)
    kept, ancestors, kv = [], [], []
    for (qid, _), ids in sorted(expanded.items()):
        needed: set[str] = set()
        for node_id in ids:
            at = by_id[(qid, node_id)].parent_id
            while at is not None:
                needed.add(at)
                at = by_id[(qid, at)].parent_id
        kept.append(len(ids))
        ancestors.append(len(needed))
        kv.append(sum(by_id[(qid, i)].tokens for i in ids | needed))
    return LayerStats(kept, ancestors, kv)


@dataclass(frozen=True)
class Outcome:
    rows: list[QueryResult]
    tokens: int
    kv_peak: int
    layers: LayerStats
    makespan: float
    wall_s: float


def load_queries(path: Path, count: int, seed: int) -> list[Query]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [
        Query(query_id(i, 0), rows[i]["problem"], rows[i]["answer"], query_seed(seed, i, 0))
        for i in range(count)
    ]


def run(program: str, queries: list[Query], concurrency: int) -> Outcome:
    graph = load_program(str(REPO / "programs" / f"{program}.spx"), {})
    engine = SimEngine(PROFILE, seed=0, answers={q.question: q.reference or "" for q in queries})
    rows: list[QueryResult] = []
    sink = Nodes()

    async def main() -> RunStats:
        await engine.start()
        try:
            return await run_queries(
                graph,
                engine,
                queries,
                mode=Mode.SYNC,
                concurrency=concurrency,
                options=SpecOptions(),
                on_result=rows.append,
                trace=sink,
            )
        finally:
            await engine.close()

    wall = time.perf_counter()
    stats = run_virtual(main())
    return Outcome(
        rows=rows,
        tokens=engine.stats().tokens_generated,
        kv_peak=engine.kv_peak_tokens(),
        layers=layer_stats(sink.nodes),
        makespan=stats.finished_at - stats.started_at,
        wall_s=time.perf_counter() - wall,
    )


def table(outcomes: dict[str, Outcome]) -> list[str]:
    lines = [
        "| program | accuracy | tokens | KV peak (tokens) | kept nodes / layer "
        "| distinct ancestors / layer | ETS KV size / layer (tokens) | engine makespan | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, o in outcomes.items():
        n = len(o.rows)
        correct = sum(1 for r in o.rows if r.correct)
        failed = sum(1 for r in o.rows if r.status != "ok")
        lay = o.layers
        lines.append(
            f"| {name} | {100 * correct / n:.0f}% ({correct}/{n}) | {o.tokens} | {o.kv_peak} "
            f"| {statistics.fmean(lay.kept):.2f} | {statistics.fmean(lay.ancestors):.2f} "
            f"| {statistics.fmean(lay.kv_tokens):.0f} | {o.makespan:.0f} s | {failed} |"
        )
    return lines


def write_between_markers(path: Path, body: str) -> None:
    text = path.read_text()
    head, found, rest = text.partition(BEGIN)
    _, found_end, tail = rest.partition(END)
    if not found or not found_end:
        raise SystemExit(f"{path} lacks the markers {BEGIN} ... {END}")
    path.write_text(f"{head}{BEGIN}\n{body}\n{END}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--limit", type=int, default=64, help="questions (default 64)")
    parser.add_argument("--dataset", type=Path, default=None, help="MATH-500 JSONL")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print only; leave README alone")
    args = parser.parse_args()
    dataset = args.dataset or next((p for p in DATA_PLACES if p.exists()), DATA_PLACES[0])
    if not dataset.exists():
        raise SystemExit(f"ets_vs_rebase: dataset not found: {dataset}")
    queries = load_queries(dataset, args.limit, args.seed)
    started = time.perf_counter()
    outcomes = {p: run(p, queries, args.concurrency) for p in ("rebase", "ets")}
    wall = time.perf_counter() - started
    rebase, ets = outcomes["rebase"], outcomes["ets"]
    same = sum(
        1
        for a, b in zip(
            sorted(rebase.rows, key=lambda r: r.query_id),
            sorted(ets.rows, key=lambda r: r.query_id),
            strict=True,
        )
        if a.answer == b.answer
    )
    body = "\n".join(
        [
            f"{args.limit} MATH-500 questions, engine `sim:{PROFILE}`, sync mode, concurrency "
            f"{args.concurrency}, seed {args.seed}; width 16, T = 0.2; ETS with the paper's cost "
            f"1/(M+N). Per-layer columns average over every layer of every query. Answers agree "
            f"on {same}/{args.limit} questions. Produced in {wall:.0f} s of wall time by:",
            "",
            f"    .venv/bin/python benchmarks/ets_vs_rebase.py -n {args.limit}",
            "",
            *table(outcomes),
        ]
    )
    print(body)
    if not args.no_write:
        write_between_markers(README, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

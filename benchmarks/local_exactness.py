"""Exact speculation on the real model: do sync and spec build the same trees on the local engine?

Runs one strategy on the embedded model in each mode (sync first), each on a fresh local engine,
the same questions and seeds at the same concurrency, as `spex bench` does, and also records the
text of every generate request. Then, per query, compares the kept trees node by node (node ids
and step texts) and the answers, and reports the speedup on the engine clock. For the first node
whose text differs it prints how each run's request ran (prompt and cached tokens, preemptions,
batch sizes), which is how a numeric cause is told from a scheduling one.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/local_exactness.py programs/rebase.spx \
        -p width=4 -p max_tokens=512 --limit 8 --concurrency 1 -o runs/exact-rebase
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compiler.load import load_program
from runtime.datasets import BUILTIN_SAMPLE, DatasetOptions, load_dataset
from runtime.engines.local import LocalEngine, LocalEngineConfig
from runtime.engines.local.batch import RequestNote
from runtime.engines.protocol import (
    Capacity,
    GenerateRequest,
    GenerateResult,
    RewardRequest,
    RewardResult,
)
from runtime.executor.api import Mode, Query, run_queries
from runtime.records import QueryResult, TraceNode, TraceRequest, TraceRun


class RecordingEngine:
    """A local engine that remembers the text each generate request returned."""

    def __init__(self, engine: LocalEngine) -> None:
        self.inner = engine
        self.name = engine.name
        self.texts: dict[str, str] = {}

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        result = await self.inner.generate(request)
        self.texts[request.request_id] = result.text
        return result

    async def score(self, request: RewardRequest) -> RewardResult:
        return await self.inner.score(request)

    async def abort(self, request_id: str) -> None:
        await self.inner.abort(request_id)

    def capacity(self) -> Capacity:
        return self.inner.capacity()

    def now(self) -> float:
        return self.inner.now()


@dataclass
class Collected:
    nodes: list[TraceNode] = field(default_factory=list)
    requests: list[TraceRequest] = field(default_factory=list)

    def run(self, record: TraceRun) -> None:
        pass  # the run header: nothing to compare

    def node(self, record: TraceNode) -> None:
        self.nodes.append(record)

    def request(self, record: TraceRequest) -> None:
        self.requests.append(record)


@dataclass
class ModeRun:
    mode: str
    results: list[QueryResult]
    engine_s: float
    wall_s: float
    kept: dict[str, dict[str, str]]  # query id -> kept node id -> step text
    request_of: dict[str, str]  # node id -> the generate request whose text it kept
    notes: dict[str, RequestNote]


def run_mode(graph: Any, queries: list[Query], mode: str, concurrency: int) -> ModeRun:
    answers = {q.question: q.reference for q in queries if q.reference is not None}
    engine = RecordingEngine(LocalEngine(LocalEngineConfig(keep_request_notes=True), answers))
    sink = Collected()
    results: list[QueryResult] = []
    span = [0.0, 0.0]

    async def session() -> None:
        await engine.start()
        span[0] = engine.now()
        try:
            await run_queries(
                graph,
                engine,
                queries,
                mode=Mode(mode),
                concurrency=concurrency,
                on_result=results.append,
                trace=sink,
            )
        finally:
            span[1] = engine.now()
            await engine.close()

    started = time.monotonic()
    asyncio.run(session())
    wall = time.monotonic() - started
    done = {
        r.node_id: r.request_id
        for r in sink.requests
        if r.kind == "generate" and r.end == "done" and r.request_id in engine.texts
    }
    kept: dict[str, dict[str, str]] = {}
    for n in sink.nodes:
        if n.outcome == "kept" and n.parent_id is not None and n.node_id in done:
            kept.setdefault(n.query_id, {})[n.node_id] = engine.texts[done[n.node_id]]
    return ModeRun(mode, results, span[1] - span[0], wall, kept, done, engine.inner.request_notes)


def first_difference(a: dict[str, str], b: dict[str, str]) -> str | None:
    """The first node (in id order) present in only one tree or with different text."""
    for node_id in sorted(set(a) | set(b)):
        if a.get(node_id) != b.get(node_id):
            return node_id
    return None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("program")
    parser.add_argument("-p", dest="params", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--dataset", default=str(BUILTIN_SAMPLE))
    parser.add_argument("--limit", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default="sync,spec")
    parser.add_argument("-o", "--output", metavar="DIR", help="write DIR/exactness.json")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.params)
    graph = load_program(Path(args.program), overrides)
    dataset = load_dataset(args.dataset, DatasetOptions(limit=args.limit, seed=args.seed))
    queries = [Query(q.query_id, q.question, q.reference, q.seed) for q in dataset.queries]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    runs = {}
    for mode in modes:
        runs[mode] = run_mode(graph, queries, mode, args.concurrency)
        print(f"{mode}: {runs[mode].engine_s:.1f} s on the engine clock", flush=True)
    base = runs[modes[0]]
    report: dict[str, Any] = {
        "program": args.program,
        "parameters": overrides,
        "dataset": args.dataset,
        "queries": len(queries),
        "concurrency": args.concurrency,
        "modes": {},
    }
    for mode in modes[1:]:
        other = runs[mode]
        base_answers = {r.query_id: r.answer for r in base.results}
        answers_same = sum(1 for r in other.results if base_answers.get(r.query_id) == r.answer)
        same_trees = 0
        differences = []
        for q in queries:
            a, b = base.kept.get(q.query_id, {}), other.kept.get(q.query_id, {})
            node = first_difference(a, b)
            if node is None:
                same_trees += 1
                continue
            notes = {}
            for run in (base, other):
                note = run.notes.get(run.request_of.get(node, ""))
                if note is not None:
                    notes[run.mode] = {k: v for k, v in asdict(note).items() if k != "tokens"}
            differences.append({"query": q.query_id, "node": node, "requests": notes})
        spec_kept = sum(r.spec_tokens_kept for r in other.results)
        spec_requests = sum(r.spec_requests for r in other.results)
        hits = sum(r.spec_hits for r in other.results)
        row = {
            "identical_kept_trees": same_trees,
            "answers_agree": answers_same,
            "queries": len(queries),
            "speedup": base.engine_s / other.engine_s if other.engine_s else None,
            "engine_s": {modes[0]: base.engine_s, mode: other.engine_s},
            "spec_tokens_kept": spec_kept,
            "spec_tokens_wasted": sum(r.spec_tokens_wasted for r in other.results),
            "hit_rate": hits / spec_requests if spec_requests else None,
            "first_differences": differences,
        }
        report["modes"][mode] = row
        print(
            f"{mode} vs {modes[0]}: identical kept trees {same_trees}/{len(queries)}, "
            f"answers agree {answers_same}/{len(queries)}, speedup {row['speedup']:.2f}x "
            f"({base.engine_s:.0f} s -> {other.engine_s:.0f} s), speculative tokens kept "
            f"{spec_kept:,}, hit rate {hits}/{spec_requests}"
        )
        for d in differences:
            print(f"  first differing node {d['node']}: {json.dumps(d['requests'])}")
    if args.output:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "exactness.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Speculation tuning table: sync vs spec vs spec+et for every program at several concurrencies.

Runs the executor directly (no CLI) on the simulated engine's virtual clock, one fresh engine per
(program, concurrency, mode), over the first N MATH-500 questions with the seeds `spex run` gives
them. Prints, per program and concurrency: the engine-clock makespan speedup of spec and spec+et
over sync, spec's mean per-query latency speedup, the hit rate (promoted speculative requests
over speculative requests), the waste (extra generated tokens over sync's, as a share of the
mode's, counted by the engine, so partial work of aborted requests counts), answer agreement
with sync, how often early termination fired and the accuracy of each mode. `-o NAME=VALUE`
sets a SpecOptions field for the speculative modes (sync never reads them).

    .venv/bin/python benchmarks/spec_tuning.py                       # 64 questions, conc 1,4,16
    .venv/bin/python benchmarks/spec_tuning.py -p rebase,beam_search -n 16 -c 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from compiler.load import load_program  # noqa: E402
from runtime.clock import run_virtual  # noqa: E402
from runtime.datasets import query_id, query_seed  # noqa: E402
from runtime.engines.sim import SimEngine  # noqa: E402
from runtime.executor.api import Mode, Query, RunStats, SpecOptions, run_queries  # noqa: E402
from runtime.records import QueryResult  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "math500.jsonl"
PROGRAMS = ("best_of_n", "beam_search", "dvts", "rebase", "ets", "tot_bfs", "tot_dfs", "mcts")
MODES = (Mode.SYNC, Mode.SPEC, Mode.SPEC_ET)


@dataclass(frozen=True)
class Outcome:
    """One mode's run: makespan, engine tokens and the per-query rows."""

    makespan: float
    tokens: int
    stats: RunStats
    answers: dict[str, str | None]
    mean_latency: float
    correct: int
    early: int
    failed: int
    wall_s: float


def load_queries(count: int, seed: int) -> list[Query]:
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    return [
        Query(query_id(i, 0), rows[i]["problem"], rows[i]["answer"], query_seed(seed, i, 0))
        for i in range(count)
    ]


def run_mode(
    program: str, mode: Mode, concurrency: int, queries: Sequence[Query], options: SpecOptions
) -> Outcome:
    graph = load_program(str(REPO / "programs" / f"{program}.spx"), {})
    engine = SimEngine("h100-7b", seed=0, answers={q.question: q.reference or "" for q in queries})
    rows: list[QueryResult] = []

    async def main() -> RunStats:
        await engine.start()
        try:
            return await run_queries(
                graph,
                engine,
                queries,
                mode=mode,
                concurrency=concurrency,
                options=options,
                on_result=rows.append,
            )
        finally:
            await engine.close()

    wall = time.perf_counter()
    stats = run_virtual(main())
    wall = time.perf_counter() - wall
    return Outcome(
        makespan=stats.finished_at - stats.started_at,
        tokens=engine.stats().tokens_generated,
        stats=stats,
        answers={r.query_id: r.answer for r in rows},
        mean_latency=sum(r.latency_s for r in rows) / max(1, len(rows)),
        correct=sum(1 for r in rows if r.correct),
        early=sum(1 for r in rows if r.early_stopped),
        failed=sum(1 for r in rows if r.status != "ok"),
        wall_s=wall,
    )


def cell(job: tuple[str, int, int, int, SpecOptions]) -> tuple[str, int, dict[Mode, Outcome]]:
    program, concurrency, count, seed, options = job
    queries = load_queries(count, seed)
    return (
        program,
        concurrency,
        {m: run_mode(program, m, concurrency, queries, options) for m in MODES},
    )


def row(program: str, concurrency: int, out: dict[Mode, Outcome]) -> str:
    sync, spec, et = out[Mode.SYNC], out[Mode.SPEC], out[Mode.SPEC_ET]
    n = len(sync.answers)

    def agree(o: Outcome) -> str:
        same = sum(1 for q, a in sync.answers.items() if o.answers.get(q) == a)
        return f"{100 * same / n:.0f}%"

    def waste(o: Outcome) -> str:
        return f"{100 * max(0, o.tokens - sync.tokens) / o.tokens:.0f}%" if o.tokens else "-"

    hits = spec.stats.spec_hits
    reqs = spec.stats.spec_requests
    hit = f"{100 * hits / reqs:.0f}%" if reqs else "-"
    acc = "/".join(f"{100 * o.correct / n:.0f}" for o in (sync, spec, et))
    return (
        f"| {program} | {concurrency} | {sync.makespan / spec.makespan:.2f}x "
        f"| {sync.makespan / et.makespan:.2f}x | {sync.mean_latency / spec.mean_latency:.2f}x "
        f"| {hit} | {reqs} | {waste(spec)} | {waste(et)} "
        f"| {agree(spec)} | {agree(et)} | {et.early}/{n} | {acc} "
        f"| {sync.failed + spec.failed + et.failed} | {spec.wall_s:.1f}s |"
    )


def spec_options(pairs: Sequence[str]) -> SpecOptions:
    """SpecOptions with the given NAME=VALUE fields replaced (typed like their defaults)."""
    defaults = SpecOptions()
    changes: dict[str, object] = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if not hasattr(defaults, name):
            raise SystemExit(f"unknown SpecOptions field {name!r}")
        kind = type(getattr(defaults, name))
        changes[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return replace(defaults, **changes)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-p", "--programs", default=",".join(PROGRAMS))
    parser.add_argument("-c", "--concurrency", default="1,4,16")
    parser.add_argument("-n", "--questions", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument(
        "-o",
        "--option",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a SpecOptions field for spec and spec+et (repeatable), e.g. -o lookahead=3",
    )
    args = parser.parse_args(argv)
    options = spec_options(args.option)
    jobs = [
        (p, int(c), args.questions, args.seed, options)
        for p in args.programs.split(",")
        for c in args.concurrency.split(",")
    ]
    started = time.perf_counter()
    print(
        f"{args.questions} MATH-500 questions, sim:h100-7b, seed {args.seed}, virtual clock; "
        "speedup = sync makespan / mode makespan"
    )
    print(
        "| program | conc | spec | spec+et | spec latency | hit rate | spec reqs | spec waste "
        "| et waste | spec agree | et agree | et fired | acc% sync/spec/et | failed | spec wall |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for program, concurrency, out in pool.map(cell, jobs):
            print(row(program, concurrency, out), flush=True)
    print(f"wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Speculation's safety properties, read back from the trace records of sim runs.

- In-flight speculative policy requests never exceed the global budget M at any instant.
- Main-path requests never wait behind speculative ones: no speculative request was admitted
  while a main-path request of the same server sat in its queue.
- Every speculative request ends promoted, aborted, or (when it finished before the search
  decided against it) with its node marked unused; none is left running when its query ends.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from reference_algorithms import Capture, compile_program, make_queries, new_engine, run_program

from runtime.engines.protocol import (
    Capacity,
    GenerateRequest,
    GenerateResult,
    RewardRequest,
    RewardResult,
)
from runtime.engines.sim import SimEngine
from runtime.executor.api import Mode, SpecOptions
from runtime.records import TraceRequest

PROGRAMS: dict[str, dict[str, str]] = {
    "rebase": {"width": "8", "max_depth": "8"},
    "beam_search": {"n": "8", "m": "2", "max_depth": "6"},
    "dvts": {"n": "8", "m": "2", "max_depth": "6"},
    "best_of_n": {"n": "6", "max_depth": "8"},
    "ets": {"width": "8", "max_depth": "8"},
    "tot_bfs": {"breadth": "2", "proposals": "3", "max_depth": "5"},
    "tot_dfs": {"proposals": "3", "threshold": "0.45", "max_depth": "6", "max_steps": "10"},
    "mcts": {"children": "3", "rollouts": "8", "max_depth": "4"},
}
# Programs whose selection reads no reward: their graph has no reward barrier to run ahead of.
NOTHING_TO_SPECULATE = {"best_of_n"}
TIGHT = SpecOptions(budget_factor=0.4)  # a budget that binds, so refusals happen


class StaleCapacity:
    """A sim engine that reports a larger batch than it runs: speculation over-subscribes it."""

    def __init__(self, inner: SimEngine) -> None:
        self.inner = inner
        self.name = inner.name

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        return await self.inner.generate(request)

    async def score(self, request: RewardRequest) -> RewardResult:
        return await self.inner.score(request)

    async def abort(self, request_id: str) -> None:
        await self.inner.abort(request_id)

    def capacity(self) -> Capacity:
        return replace(self.inner.capacity(), max_running_requests=256)

    def now(self) -> float:
        return self.inner.now()


def max_concurrent(requests: list[TraceRequest]) -> int:
    """Most requests in flight at once, intervals [enqueued_at, ended_at)."""
    events: list[tuple[float, int]] = []
    for r in requests:
        assert r.ended_at is not None
        events.append((r.enqueued_at, 1))
        events.append((r.ended_at, -1))
    events.sort(key=lambda e: (e[0], e[1]))  # an end at t frees its slot before a start at t
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def assert_budget_respected(capture: Capture) -> None:
    spec_gen = [
        r for r in capture.trace.requests if r.kind == "generate" and r.priority == "speculative"
    ]
    assert max_concurrent(spec_gen) <= capture.stats.budget_cap
    assert capture.stats.max_spec_in_flight <= capture.stats.budget_cap


def assert_main_never_waits_behind_speculation(capture: Capture) -> None:
    for kind in ("generate", "reward"):
        started = [r for r in capture.trace.requests if r.kind == kind and r.started_at is not None]
        mains = [r for r in started if r.priority == "main"]
        for spec in (r for r in started if r.priority == "speculative"):
            assert spec.started_at is not None
            for main in mains:
                assert main.started_at is not None
                queued_then = main.enqueued_at < spec.started_at < main.started_at
                assert not queued_then, f"{spec.request_id} started while {main.request_id} waited"


def assert_speculation_ends_cleanly(capture: Capture) -> None:
    outcome = {(n.query_id, n.node_id): n.outcome for n in capture.trace.nodes}
    for r in capture.trace.requests:
        row = capture.results[r.query_id]
        assert r.end in ("done", "aborted", "failed"), f"{r.request_id} still {r.end}"
        assert r.ended_at is not None and r.ended_at <= row.finished_at + 1e-12
        if r.priority != "speculative":
            continue
        node = outcome[(r.query_id, r.node_id)]
        if r.promoted:
            assert node == "kept"
        else:
            assert r.end == "aborted" or node in ("aborted", "unused"), r.request_id
            assert node != "kept" or r.kind == "reward"


def assert_trace_matches_rows(capture: Capture, *, layered: bool) -> None:
    for qid, row in capture.results.items():
        nodes = [n for n in capture.trace.nodes if n.query_id == qid]
        kept = [n for n in nodes if n.outcome == "kept" and n.parent_id is not None]
        assert len(kept) == row.nodes
        kept_leaves = sum(n.is_leaf for n in kept)
        # Layered searches count every kept leaf; rollouts and DFS only those they reached.
        assert kept_leaves == row.leaves if layered else kept_leaves >= row.leaves
        spec_gen = [
            r
            for r in capture.trace.requests
            if r.query_id == qid and r.kind == "generate" and r.priority == "speculative"
        ]
        assert len(spec_gen) == row.spec_requests
        assert sum(r.promoted for r in spec_gen) == row.spec_hits
        assert {n.outcome for n in nodes} <= {"kept", "aborted", "unused"}


@pytest.mark.parametrize("program", sorted(PROGRAMS))
@pytest.mark.parametrize("mode", [Mode.SPEC, Mode.SPEC_ET], ids=["spec", "spec+et"])
def test_trace_invariants(program: str, mode: Mode) -> None:
    graph = compile_program(program, PROGRAMS[program])
    queries = make_queries(6, first_row=50, seed=9)
    # The engine really runs 12 requests at once but reports room for 256 (as a remote engine's
    # stale report might): speculation then competes with main-path work for the batch, and
    # only the engine's priority admission keeps main-path work first.
    engine = StaleCapacity(new_engine(queries, max_running_requests=12))
    capture = run_program(graph, queries, mode, concurrency=4, options=TIGHT, engine=engine)  # type: ignore[arg-type]
    assert all(r.status == "ok" for r in capture.results.values())
    if program in NOTHING_TO_SPECULATE:
        assert capture.stats.spec_requests == 0
    else:
        assert capture.stats.spec_requests > 0
    assert_budget_respected(capture)
    assert_main_never_waits_behind_speculation(capture)
    assert_speculation_ends_cleanly(capture)
    assert_trace_matches_rows(capture, layered=program not in ("mcts", "tot_dfs"))


def test_tight_budget_refuses_and_still_matches_sync() -> None:
    graph = compile_program("rebase", PROGRAMS["rebase"])
    queries = make_queries(6, first_row=50, seed=9)
    tight = run_program(graph, queries, Mode.SPEC, concurrency=4, options=TIGHT)
    sync = run_program(graph, queries, Mode.SYNC, concurrency=4)
    assert tight.stats.spec_refused > 0
    for qid, row in sync.results.items():
        assert tight.results[qid].answer == row.answer
        assert tight.kept(qid) == sync.kept(qid)


def test_no_trace_records_are_built_without_a_sink() -> None:
    # run_queries with trace=None must still fill every row honestly.
    from runtime.clock import run_virtual
    from runtime.executor.api import run_queries
    from runtime.records import QueryResult

    graph = compile_program("rebase", PROGRAMS["rebase"])
    queries = make_queries(3, first_row=50, seed=9)
    rows: list[QueryResult] = []
    engine = new_engine(queries)
    stats = run_virtual(
        run_queries(graph, engine, queries, mode=Mode.SPEC, concurrency=2, on_result=rows.append)
    )
    assert stats.queries == 3 and stats.ok == 3
    traced = run_program(graph, queries, Mode.SPEC, concurrency=2)
    for row in rows:
        other = traced.results[row.query_id]
        assert (row.answer, row.nodes, row.spec_hits) == (
            other.answer,
            other.nodes,
            other.spec_hits,
        )
        assert row.latency_s == pytest.approx(other.latency_s)

"""Engine failures stay inside their query: its row says 'failed' and why; the others finish.

A wrapper around the sim engine fails requests of one chosen question (generation or scoring),
or only speculative ones. The failed query's row carries the engine's message, nothing of it
stays running, and every other query's row is the same as in a run without failures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from reference_algorithms import Capture, compile_program, make_queries, new_engine, run_program

from runtime.clock import run_virtual
from runtime.engines.protocol import (
    Capacity,
    EngineError,
    GenerateRequest,
    GenerateResult,
    Priority,
    RewardRequest,
    RewardResult,
)
from runtime.engines.sim import SimEngine
from runtime.executor.api import Mode, run_queries
from runtime.records import QueryResult

OVERRIDES = {"width": "6", "max_depth": "8"}


@dataclass
class FailingEngine:
    """Delegates to a SimEngine but fails the requests `fails` picks."""

    inner: SimEngine
    bad_question: str
    on_generate: bool = True
    on_score: bool = False
    speculative_only: bool = False
    failed: list[str] = field(default_factory=list)
    name: str = "failing-sim"

    def _fails(self, text: str, priority: Priority) -> bool:
        if self.speculative_only and priority is not Priority.SPECULATIVE:
            return False
        return self.bad_question in text

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        if self.on_generate and self._fails(request.text, request.priority):
            self.failed.append(request.request_id)
            raise EngineError("simulated server error 500: the GPU fell off the bus")
        return await self.inner.generate(request)

    async def score(self, request: RewardRequest) -> RewardResult:
        if self.on_score and self._fails(request.prompt, request.priority):
            self.failed.append(request.request_id)
            raise EngineError("reward server timed out")
        return await self.inner.score(request)

    async def abort(self, request_id: str) -> None:
        await self.inner.abort(request_id)

    def capacity(self) -> Capacity:
        return self.inner.capacity()

    def now(self) -> float:
        return self.inner.now()


def assert_others_unharmed(capture: Capture, clean: Capture, bad_id: str) -> None:
    for qid, row in clean.results.items():
        if qid == bad_id:
            continue
        assert capture.results[qid].status == "ok"
        assert capture.results[qid].answer == row.answer
        assert capture.kept(qid) == clean.kept(qid)


@pytest.mark.parametrize("mode", [Mode.SYNC, Mode.SPEC, Mode.SPEC_ET], ids=lambda m: m.value)
@pytest.mark.parametrize("where", ["generate", "score"])
def test_failing_query_fails_alone(mode: Mode, where: str) -> None:
    graph = compile_program("rebase", OVERRIDES)
    queries = make_queries(5, first_row=60, seed=1)
    bad = queries[2]
    engine = FailingEngine(
        new_engine(queries),
        bad.question,
        on_generate=where == "generate",
        on_score=where == "score",
    )
    capture = run_program(graph, queries, mode, concurrency=2, engine=engine)  # type: ignore[arg-type]
    clean = run_program(graph, queries, mode, concurrency=2)
    assert engine.failed
    assert set(capture.results) == {q.query_id for q in queries}
    row = capture.results[bad.query_id]
    assert row.status == "failed"
    assert row.answer is None and row.correct is None
    assert row.error is not None and "engine failed" in row.error
    assert ("GPU fell off" in row.error) if where == "generate" else ("timed out" in row.error)
    assert capture.stats.failed == 1 and capture.stats.ok == len(queries) - 1
    for r in capture.trace.requests:
        if r.query_id == bad.query_id:
            assert r.end != "running" and r.ended_at is not None
            assert r.ended_at <= row.finished_at + 1e-12
    assert_others_unharmed(capture, clean, bad.query_id)


def test_failed_speculation_is_redone_on_the_main_path() -> None:
    # A speculative request that fails is only lost speculation: the search re-requests the
    # node at main priority when it needs it, and the query ends as in a clean run.
    graph = compile_program("rebase", OVERRIDES)
    queries = make_queries(3, first_row=60, seed=1)
    engine = FailingEngine(new_engine(queries), queries[1].question, speculative_only=True)
    capture = run_program(graph, queries, Mode.SPEC, concurrency=1, engine=engine)  # type: ignore[arg-type]
    sync = run_program(graph, queries, Mode.SYNC, concurrency=1)
    assert engine.failed
    for qid, row in sync.results.items():
        assert capture.results[qid].status == "ok"
        assert capture.results[qid].answer == row.answer
        assert capture.kept(qid) == sync.kept(qid)


def test_every_row_reaches_on_result_in_finish_order() -> None:
    graph = compile_program("rebase", OVERRIDES)
    queries = make_queries(6, first_row=60, seed=1)
    capture = run_program(graph, queries, Mode.SPEC, concurrency=3)
    finished = [r.finished_at for r in capture.results.values()]
    assert finished == sorted(finished)
    assert len(capture.results) == 6


def test_a_failing_result_writer_stops_the_run_with_its_own_error() -> None:
    graph = compile_program("rebase", OVERRIDES)
    queries = make_queries(6, first_row=60, seed=1)
    engine = new_engine(queries)
    seen: list[str] = []

    def on_result(row: QueryResult) -> None:
        seen.append(row.query_id)
        if len(seen) == 2:
            raise OSError("disk full")

    async def main() -> None:
        await run_queries(
            graph, engine, queries, mode=Mode.SPEC, concurrency=3, on_result=on_result
        )

    with pytest.raises(OSError, match="disk full"):
        run_virtual(main())
    assert len(seen) == 2
    assert engine.capacity().running_requests == 0 and engine.capacity().queued_requests == 0

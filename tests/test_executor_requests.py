"""What the interpreter sends and how it ends: roles on requests, end-of-sequence leaves, and
strategy expressions that fail at run time (a located error naming the expression, never a
silent empty run)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from reference_algorithms import compile_program, make_queries, new_engine, run_program

from compiler.load import load_program
from runtime.cli.main import main
from runtime.engines.protocol import (
    Capacity,
    FinishReason,
    GenerateRequest,
    GenerateResult,
    RewardRequest,
    RewardResult,
)
from runtime.engines.sim import SimEngine
from runtime.executor.api import Mode


class Recording:
    """A sim engine that records the requests it gets; `eos_depth` makes every step at that
    depth end with the model's end of sequence."""

    def __init__(self, inner: SimEngine, eos_depth: int | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.eos_depth = eos_depth
        self.generates: list[GenerateRequest] = []
        self.rewards: list[RewardRequest] = []

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        self.generates.append(request)
        result = await self.inner.generate(request)
        path = request.request_id.split("/")[1].split(":")[0]
        if self.eos_depth is not None and len(path.split(".")) == self.eos_depth:
            return replace(result, finish_reason=FinishReason.EOS)
        return result

    async def score(self, request: RewardRequest) -> RewardResult:
        self.rewards.append(request)
        return await self.inner.score(request)

    async def abort(self, request_id: str) -> None:
        await self.inner.abort(request_id)

    def capacity(self) -> Capacity:
        return self.inner.capacity()

    def now(self) -> float:
        return self.inner.now()


def test_every_request_carries_its_role() -> None:
    graph = compile_program("tot_bfs", {"breadth": "2", "proposals": "2", "max_depth": "3"})
    queries = make_queries(2, first_row=5, seed=3)
    engine = Recording(new_engine(queries))
    run_program(graph, queries, Mode.SPEC, engine=engine)  # type: ignore[arg-type]
    assert engine.generates and engine.rewards
    assert {r.role for r in engine.generates} == {"policy"}
    assert {r.role for r in engine.rewards} == {"value"}


def test_an_end_of_sequence_step_is_a_finished_leaf() -> None:
    graph = compile_program("beam_search", {"n": "4", "m": "2", "max_depth": "6"})
    queries = make_queries(3, first_row=5, seed=3)
    for mode in (Mode.SYNC, Mode.SPEC):
        engine = Recording(new_engine(queries), eos_depth=2)
        capture = run_program(graph, queries, mode, engine=engine)  # type: ignore[arg-type]
        assert all(r.status == "ok" for r in capture.results.values())
        kept = [n for n in capture.trace.nodes if n.outcome == "kept"]
        assert max(n.depth for n in kept) == 2  # nothing extends an ended sequence
        assert all(n.is_leaf for n in kept if n.depth == 2)
        assert all(len(r.request_id.split("/")[1].split(".")) <= 2 for r in engine.generates)


def run_with(child_expr: str) -> list[str]:
    graph = load_program(PROGRAM.replace("CHILDREN", child_expr), {}, name="prog.spx")
    queries = make_queries(2, first_row=0, seed=1)
    capture = run_program(graph, queries, Mode.SYNC)
    return [r.error or "" for r in capture.results.values() if r.status != "ok"]


PROGRAM = """strategy chains(n: int = 3)
prompt "{question}\\n"
step   "\\n\\n"
answer /The answer is:?\\s*(.+)/
model policy = generate(temperature = 0.8, max_tokens = 64)
search layered {
  start  children = n
  expand frontier with policy, children = CHILDREN
  leaf   when answered or depth >= 8
  until  depth >= 8
}
return majority(leaves)
"""


def test_a_count_that_fails_at_run_time_fails_the_query_naming_the_expression() -> None:
    errors = run_with("4 // (depth - 1)")
    assert len(errors) == 2
    assert all("division by zero" in e and "4 // (depth - 1)" in e for e in errors)
    # Located like a compile error: file:line:col, the source line and a caret under it.
    line = "    expand frontier with policy, children = 4 // (depth - 1)"  # rendered indented
    caret = " " * line.index("4 //") + "^" * len("4 // (depth - 1)")
    assert errors[0].splitlines() == [
        "prog.spx:8:43: error: division by zero in 4 // (depth - 1)",
        line,
        caret,
    ]


def test_a_negative_count_is_an_error_not_an_empty_run() -> None:
    errors = run_with("depth - 5")
    assert len(errors) == 2
    assert all("`children` must be at least 1" in e and "depth - 5" in e for e in errors)


def test_the_cli_exits_non_zero_with_the_expression_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program = tmp_path / "prog.spx"
    program.write_text(PROGRAM.replace("CHILDREN", "depth - 5"), encoding="utf-8")
    dataset = tmp_path / "rows.jsonl"
    dataset.write_text('{"question": "What is 2+2?", "answer": "4"}\n', encoding="utf-8")
    code = main(["run", str(program), "--engine", "sim", "--dataset", str(dataset), "--quiet"])
    err = capsys.readouterr().err
    assert code != 0
    assert "depth - 5" in err and "Traceback" not in err

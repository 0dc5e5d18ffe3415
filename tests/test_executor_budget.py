"""The global budget ledger, the usefulness gate and what the executor reads from the IR."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from reference_algorithms import compile_program

from compiler.expr import Counted
from compiler.ir import OpKind, StrategyGraph
from runtime.engines.protocol import Capacity
from runtime.executor.api import SpecOptions, nominal_width
from runtime.executor.budget import BudgetLedger, UsefulnessGate, engine_room
from runtime.executor.plan import PlanError, SearchPlan


@dataclass
class StubEngine:
    """Only what the ledger reads: the engine's capacity."""

    cap: Capacity = field(
        default_factory=lambda: Capacity(
            256, 100_000, running_requests=0, queued_requests=0, used_tokens=0
        )
    )

    def capacity(self) -> Capacity:
        return self.cap


def ledger(cap: int, engine: StubEngine | None = None) -> BudgetLedger:
    return BudgetLedger(cap, engine or StubEngine())  # type: ignore[arg-type]


def test_speculation_gets_what_main_work_leaves_under_the_cap() -> None:
    book = ledger(10)
    for _ in range(6):
        book.acquire_main()
    assert book.grant_spec(3) == 3
    assert book.grant_spec(5) == 1  # 10 - 6 - 3
    assert book.grant_spec(2) == 0
    assert book.stats.refused == 4 + 2
    for _ in range(5):
        book.acquire_main()  # main-path work always gets a slot, even over the cap
    assert book.main == 11 and book.stats.max_total == 15
    book.release(speculative=True)
    assert book.grant_spec(1) == 0  # still over the cap
    assert book.stats.max_spec == 4


def test_promotion_moves_a_slot_from_speculative_to_main() -> None:
    book = ledger(4)
    assert book.grant_spec(4) == 4
    book.promote()
    assert (book.main, book.spec) == (1, 3)
    book.release(speculative=False)
    assert book.grant_spec(4) == 1


def test_the_cap_adapts_to_the_engines_free_capacity() -> None:
    busy = StubEngine(
        Capacity(16, 100_000, running_requests=14, queued_requests=0, used_tokens=2000)
    )
    assert ledger(100, busy).grant_spec(10) == 2  # two free batch slots
    full_kv = StubEngine(
        Capacity(256, 10_000, running_requests=10, queued_requests=0, used_tokens=6000)
    )
    assert ledger(100, full_kv).grant_spec(10) == 0  # KV beyond the share speculation may fill
    assert engine_room(Capacity(256, 100_000, 10, 0, 10_000)) == 40  # (50_000 - 10_000) / 1000


def test_gate_shrinks_the_cap_below_its_floor() -> None:
    gate = UsefulnessGate(alpha=0.4, start=0.5, floor=0.25, min_factor=0.4)
    assert gate.multiplier == 1.0
    gate.observe(kept=0, decided=10)  # 0.4·0 + 0.6·0.5 = 0.3
    assert gate.value == pytest.approx(0.3) and gate.multiplier == 1.0
    gate.observe(kept=0, decided=4)  # 0.18
    assert gate.value == pytest.approx(0.18)
    assert gate.multiplier == pytest.approx(0.4 + 0.6 * 0.18 / 0.25)
    for _ in range(30):
        gate.observe(kept=0, decided=1)
    assert gate.multiplier == pytest.approx(0.4, abs=1e-4)
    gate.observe(kept=3, decided=0)  # nothing decided: no change
    assert gate.multiplier == pytest.approx(0.4, abs=1e-4)


def test_plan_reads_the_compiled_program() -> None:
    plan = SearchPlan.from_graph(compile_program("rebase"))
    assert plan.reward_names == ("prm",)
    assert plan.sampling.stop[0] == plan.delimiter == "\n\n"
    assert "{question}" not in plan.render_prompt("What is 2+2?")
    counts = dict.fromkeys(Counted, 0)
    assert plan.steps_until(Counted.LEAVES, counts, depth=1) == 16
    counts[Counted.LEAVES] = 10
    assert plan.steps_until(Counted.LEAVES, counts, depth=1) == 6
    assert plan.steps_until(Counted.LEAVES, counts, depth=40) == 0  # depth bound reached
    beam = SearchPlan.from_graph(compile_program("beam_search"))
    assert beam.steps_until(Counted.LEAVES, counts, depth=1) is None  # bounded by depth only


def test_nominal_widths_follow_each_rule() -> None:
    width = {
        name: nominal_width(SearchPlan.from_graph(compile_program(name)), 2)
        for name in ("rebase", "beam_search", "dvts", "best_of_n", "tot_bfs", "mcts", "tot_dfs")
    }
    assert width == {
        "rebase": 16,  # the allocation budget
        "beam_search": 16,  # n/m kept × m children
        "dvts": 16,  # n/m subtrees × 1 kept × m children
        "best_of_n": 16,  # n chains
        "tot_bfs": 25,  # breadth × proposals
        "mcts": 12,  # children × (1 + lookahead)
        "tot_dfs": 15,
    }
    assert SpecOptions().budget_factor == 1.5


def test_a_graph_without_a_search_is_refused() -> None:
    graph = compile_program("rebase")
    broken = StrategyGraph(graph.strategy, graph.params, graph.roles)
    for op in graph.ops():
        if op.kind is not OpKind.SELECT:
            broken.add_op(op)
    with pytest.raises(PlanError, match="select"):
        SearchPlan.from_graph(broken)


def test_may_grant_says_whether_a_grant_could_succeed() -> None:
    book = ledger(4)
    assert book.may_grant()
    assert book.grant_spec(4) == 4
    assert not book.may_grant()  # the cap is full
    reserved = BudgetLedger(100, StubEngine(), reserve=256)  # type: ignore[arg-type]
    assert not reserved.may_grant()  # the main paths could fill the whole batch
    assert reserved.grant_spec(1) == 0


def test_an_engine_is_quiet_while_its_batch_is_small() -> None:
    engine = StubEngine()
    book = BudgetLedger(10, engine)  # type: ignore[arg-type]
    assert book.engine_quiet()
    engine.cap = Capacity(256, 100_000, running_requests=64, queued_requests=0, used_tokens=0)
    assert book.engine_quiet()
    engine.cap = Capacity(256, 100_000, running_requests=65, queued_requests=0, used_tokens=0)
    assert not book.engine_quiet()

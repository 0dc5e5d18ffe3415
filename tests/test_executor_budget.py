"""The global budget ledger, the usefulness gate and what the executor reads from the IR."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from reference_algorithms import compile_program

from compiler.expr import Counted
from compiler.ir import OpKind, StrategyGraph
from runtime.clock import run_virtual
from runtime.engines.protocol import Capacity
from runtime.executor.api import SpecOptions, nominal_width
from runtime.executor.budget import (
    BudgetLedger,
    KeepCalibration,
    LaunchBatch,
    UsefulnessGate,
    kv_room,
)
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
    assert kv_room(Capacity(256, 100_000, 10, 0, 10_000)) == 40  # (50_000 - 10_000) / 1000


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


def test_load_counts_running_and_queued_requests() -> None:
    engine = StubEngine(
        Capacity(200, 100_000, running_requests=30, queued_requests=20, used_tokens=0)
    )
    book = BudgetLedger(10, engine)  # type: ignore[arg-type]
    assert book.load() == pytest.approx(0.25)
    engine.cap = Capacity(200, 100_000, running_requests=200, queued_requests=50, used_tokens=0)
    assert book.load() == 1.0


def test_calibration_starts_at_its_prior_and_follows_what_happened() -> None:
    calibration = KeepCalibration(prior=0.5, weight=2.0)
    key = (1, 2, 3, 0)
    assert calibration.rate(key) == 0.5
    for _ in range(8):
        calibration.observe(key, kept=True)
    assert calibration.rate(key) == pytest.approx((8 + 1) / (8 + 2))
    calibration.observe(key, kept=False)
    assert calibration.rate(key) == pytest.approx((8 + 1) / (9 + 2))
    assert calibration.rate((2, 0, 0, 0)) == 0.5  # keys are apart


def test_held_launches_go_out_together_when_the_delay_ends() -> None:
    started: list[tuple[str, float]] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        batch = LaunchBatch(0.05)
        batch.defer(lambda: started.append(("a", loop.time())))
        await asyncio.sleep(0.02)
        batch.defer(lambda: started.append(("b", loop.time())))
        assert started == []
        await asyncio.sleep(0.1)
        assert [name for name, _ in started] == ["a", "b"]  # in the order they were held
        assert started[0][1] == started[1][1] == pytest.approx(0.05)

    run_virtual(scenario())


def test_a_main_request_takes_the_held_launches_along() -> None:
    started: list[str] = []

    async def scenario() -> None:
        book = BudgetLedger(10, StubEngine(), batch_delay_s=1.0)  # type: ignore[arg-type]
        book.launches.defer(lambda: started.append("spec"))
        assert started == []
        book.acquire_main()
        assert started == []
        book.main_started()  # its admission is paid anyway, once the main requests are out
        assert started == []
        await asyncio.sleep(0)
        assert started == ["spec"]
        await asyncio.sleep(2.0)
        assert started == ["spec"]  # the cancelled timer starts nothing twice

    run_virtual(scenario())


def test_without_a_delay_launches_start_at_once() -> None:
    started: list[str] = []
    LaunchBatch(0.0).defer(lambda: started.append("now"))
    assert started == ["now"]


def test_without_a_reserve_speculation_takes_the_free_batch_slots() -> None:
    # 16 queries of width 16 could fill a 256-slot batch, but 40 requests run now: the
    # engine's priority admission lets main paths preempt speculation when they come.
    busy = StubEngine(
        Capacity(256, 1_000_000, running_requests=40, queued_requests=0, used_tokens=0)
    )
    held = BudgetLedger(1000, busy, reserve=256)  # type: ignore[arg-type]
    free = BudgetLedger(1000, busy, reserve=0)  # type: ignore[arg-type]
    for book in (held, free):
        for _ in range(40):
            book.acquire_main()
    assert held.grant_spec(50) == 0
    assert free.grant_spec(50) == 50


def test_a_planner_runs_just_before_its_batch_and_its_launches_go_with_it() -> None:
    events: list[tuple[str, float]] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        batch = LaunchBatch(0.05)

        def planner() -> None:
            events.append(("plan", loop.time()))
            batch.defer(lambda: events.append(("planned launch", loop.time())))

        batch.plan(planner)
        await asyncio.sleep(0.02)
        batch.defer(lambda: events.append(("held launch", loop.time())))
        assert events == []
        await asyncio.sleep(0.2)
        # One batch at 0.05: the plan first, then every launch, the planned one included.
        assert [name for name, _ in events] == ["plan", "held launch", "planned launch"]
        assert [at for _, at in events] == [pytest.approx(0.05)] * 3

    run_virtual(scenario())


def test_without_a_delay_a_planner_runs_at_once() -> None:
    ran: list[str] = []
    LaunchBatch(0.0).plan(lambda: ran.append("plan"))
    assert ran == ["plan"]

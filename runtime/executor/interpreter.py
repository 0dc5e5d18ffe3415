"""The graph interpreter: one method per op kind, run per query over the compiled graph.

In the spirit of torch.fx's `Interpreter`: `GraphInterpreter.run` walks the graph's ops in
topological order and calls the method named after each op's kind. The ops outside the search
loop run once per query (`input`, `prompt`, `answer`); the SEARCH op runs its region, the
search construct named by its kind (layered, rollout, depth-first), and the ops inside the loop
(`generate`, `reward`, `lookahead`, `leaf_test`, `select`, `backup`,
`stop_test`) run per tree node, fired by
the region's dataflow scheduler as soon as the inputs they read (their in-edges) exist for that
node: see `QueryRun` (the per-node ops) and the regions (selection, stop, backup). Their
methods here only check that the region has them. A strategy expression that fails is
re-raised located at the op and attribute it belongs to (`StrategyError`); `describe` renders
it as a located diagnostic when the graph knows its source.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from compiler.ir import Op, OpKind, SearchKind, StrategyGraph
from runtime.executor.best_first import BestFirstSearch
from runtime.executor.depth_first import DepthFirstSearch
from runtime.executor.layered import LayeredSearch
from runtime.executor.plan import PlanError, SearchPlan
from runtime.executor.query import QueryRun
from runtime.executor.rollout import RolloutSearch
from runtime.executor.rules import StrategyError
from runtime.executor.values import check_judges


class Region(Protocol):
    """A search construct: runs the loop region of one query."""

    async def search(self) -> None: ...


REGIONS: dict[SearchKind, Callable[[QueryRun], Region]] = {
    SearchKind.LAYERED: LayeredSearch,
    SearchKind.ROLLOUT: RolloutSearch,
    SearchKind.DEPTH_FIRST: DepthFirstSearch,
    SearchKind.BEST_FIRST: BestFirstSearch,
}
# Ops the search region fires per node; at the top level they need no call of their own.
IN_REGION = frozenset(
    {
        OpKind.GENERATE,
        OpKind.REWARD,
        OpKind.LOOKAHEAD,
        OpKind.LEAF_TEST,
        OpKind.SELECT,
        OpKind.BACKUP,
        OpKind.STOP_TEST,
    }
)


class GraphInterpreter:
    """Executes one compiled graph; `run` searches one query and returns its answer."""

    def __init__(self, graph: StrategyGraph) -> None:
        self.graph = graph
        self.plan = SearchPlan.from_graph(graph)
        check_judges(graph)
        kind = self.plan.kind
        if kind not in REGIONS:
            raise PlanError(f"no search construct runs a {kind.value} search")

    async def run(self, query: QueryRun) -> str | None:
        """Run every op of the graph for `query`, in topological order; the answer."""
        answer: str | None = None
        for op in self.graph.ops():
            result = await self.run_op(op, query)
            if op.kind is OpKind.ANSWER:
                answer = result
        return answer

    async def run_op(self, op: Op, query: QueryRun) -> str | None:
        method = getattr(self, op.kind.value, None)
        if method is None:
            raise PlanError(f"the interpreter has no method for %{op.name} ({op.kind.value})")
        result: str | None = await method(op, query)
        return result

    # -- once per query ---------------------------------------------------------------------

    async def input(self, op: Op, query: QueryRun) -> None:
        """The question is the query's own (the dataset row was read by the caller)."""

    async def prompt(self, op: Op, query: QueryRun) -> None:
        """The root's text is the rendered template (QueryRun renders it when it starts)."""

    async def search(self, op: Op, query: QueryRun) -> None:
        await REGIONS[self.plan.kind](query).search()

    async def answer(self, op: Op, query: QueryRun) -> str | None:
        # The answer reads the leaves' rewards (its REWARD in-edges): off the critical path
        # they may still be arriving.
        if not query.early_stopped:
            await query.settle_kept()
        return query.answer()

    # -- per node, fired by the region -------------------------------------------------------

    async def generate(self, op: Op, query: QueryRun) -> None:
        """Fired per node by QueryRun.launch (one policy request, role = the op's role)."""

    async def reward(self, op: Op, query: QueryRun) -> None:
        """Fired per generated node by QueryRun (one reward request, role = the op's role)."""

    async def lookahead(self, op: Op, query: QueryRun) -> None:
        """Fired per generated node by QueryRun (values.look_ahead: a k-step continuation)."""

    async def leaf_test(self, op: Op, query: QueryRun) -> None:
        """Fired per node by QueryRun once the rewards it reads are in."""

    async def select(self, op: Op, query: QueryRun) -> None:
        """Fired by the region per group of ready candidates (the rule's granularity)."""

    async def backup(self, op: Op, query: QueryRun) -> None:
        """Fired by the rollout region per finished rollout."""

    async def stop_test(self, op: Op, query: QueryRun) -> None:
        """Fired by the region after each group's layer (or rollout, or visit)."""


def describe(graph: StrategyGraph, error: StrategyError) -> str:
    """The message of a failed strategy expression: a located diagnostic when the graph knows
    its source, else the op and attribute it belongs to."""
    locate = getattr(graph, "diagnostic", None)
    if locate is not None and getattr(graph, "source", None) is not None:
        try:
            rendered: str = locate(error.op, error.attr, error.message).render()
            return rendered
        except (KeyError, ValueError, AttributeError):
            pass
    return f"strategy expression failed in %{error.op} ({error.attr} = {error.expr}): {error}"

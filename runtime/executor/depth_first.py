"""Depth-first search with backtracking (ToT-DFS, Yao et al.).

Synchronous semantics (the graph's dependencies): to visit a node, check the stop test (e.g.
`count(leaves) >= 1 or count(expansions) >= 20`, with `depth` = the deepest kept node), expand
it: generate all `children` children and wait until each is ready for the selection (leaf-tested
and scored by the role the selection orders by: the reward barrier), then go through them best
first (descending reward, ties by index). A child whose reward is below the prune bound is
skipped (that is the backtracking). A leaf child is visited: it counts as a leaf and the stop
test is checked again; any other child is visited recursively. Pruned leaves are not counted.

Speculation: while an expansion waits for its children's rewards, the best child scored so far
(non-leaf, not pruned) is pre-expanded at speculative priority, and, when its children arrive, the
best of those, up to `lookahead` levels down; below the first level only while the engine is
quiet (`BudgetLedger.engine_quiet`): a second-level guess is right about a quarter of the time,
which pays on an idle engine but not on a busy one (measured on the sim, ToT-DFS at 16 queries:
mean latency 0.89x -> 0.98x of sync's, makespan 0.98x -> 1.05x; unchanged at 1 and 4 queries).
When the main path visits a pre-expanded node, it promotes those children (a hit); the kept tree
stays the synchronous one.
"""

from __future__ import annotations

import math

from compiler.expr import Counted, Value
from runtime.executor.query import QueryRun
from runtime.executor.rules import evaluate_at
from runtime.executor.tree import Node


class _Stop(Exception):
    """The stop test (or early termination) ended the search mid-descent."""


class DepthFirstSearch:
    """Runs one query's DFS on a QueryRun, with or without speculative pre-expansion."""

    def __init__(self, run: QueryRun) -> None:
        self.run = run
        sel = run.plan.select
        self.children = run.plan.args(run.counts).count("children", 0)
        self.role = sel.reward_role
        self.prune_below = sel.prune_below
        self.lookahead = max(0, run.options.lookahead) if run.speculating else 0
        self.waiting_at: Node | None = None
        self.deepest = 0
        self.judging: list[tuple[Node, int]] = []
        self.planned: set[int] = set()  # ids of nodes already pre-expanded (judged once)
        if self.lookahead:
            run.on_event = self.on_event

    async def search(self) -> None:
        try:
            await self.visit(self.run.root)
        except _Stop:
            pass

    def check_stop(self) -> None:
        run = self.run
        if run.early_stopped or run.stop_test(self.deepest):
            raise _Stop

    def pruned(self, node: Node) -> bool:
        if self.prune_below is None:
            return False
        names: dict[str, Value] = {
            "depth": node.depth,
            "tokens": node.path_tokens,
            "answered": node.answered,
        }
        names.update(node.rewards)
        bound = evaluate_at("select", "prune_below", self.prune_below, names, self.run.counts)
        return node.reward(self.role) < float(bound)

    async def visit(self, node: Node) -> None:
        run = self.run
        self.check_stop()
        kids = run.expand_main(node, self.children)
        self.deepest = max(self.deepest, node.depth + 1)
        self.judge_pre_expansions()
        self.waiting_at = node
        try:
            if self.lookahead and not self.all_ready(kids):
                self.plan()
            await run.wait_for(lambda: self.all_ready(kids))
        finally:
            self.waiting_at = None
        run.check_alive(kids)
        for child in sorted(kids, key=lambda k: (-k.reward(self.role), k.index)):
            if self.pruned(child):
                continue
            if child.is_leaf:
                run.add_leaf(child)
                self.check_early_stop()
                self.check_stop()
                continue
            await self.visit(child)

    def all_ready(self, kids: list[Node]) -> bool:
        return all(self.run.ready(k) or k.finished for k in kids)

    def check_early_stop(self) -> None:
        run = self.run
        left = run.plan.steps_until(Counted.LEAVES, run.counts, self.deepest)
        if left is not None and run.settled(left, confidence=run.options.et_confidence):
            run.early_stopped = True

    # -- speculation ---------------------------------------------------------------------

    def on_event(self, node: Node) -> None:
        # Planning on the event that ends the wait would only race the main path.
        if self.waiting_at is not None and not node.cancelled and self.run.waiting():
            self.plan()

    def plan(self) -> None:
        """Pre-expand the best child so far of the waiting node, and down `lookahead` levels."""
        node = self.waiting_at
        run = self.run
        if node is None or run.early_stopped:
            return
        cap = math.ceil(
            run.options.layer_factor * run.gate.multiplier * self.children * self.lookahead
        )
        levels = self.lookahead if run.ledger.engine_quiet() else min(1, self.lookahead)
        for _ in range(levels):
            candidates = [
                c
                for c in node.children.values()
                if c.live and self.run.ready(c) and not c.is_leaf and not self.pruned(c)
            ]
            if not candidates:
                return
            best = max(candidates, key=lambda c: (c.reward(self.role), -c.index))
            if not best.expanded and len(best.children) < self.children:
                if run.pre_expand(best, self.children, cap) and id(best) not in self.planned:
                    self.planned.add(id(best))
                    self.judging.append((best, run.counts[Counted.EXPANSIONS]))
                return
            node = best

    def judge_pre_expansions(self) -> None:
        """Gate update: a pre-expansion is kept if the main path expanded it within the next
        two expansions after it was made; judged then, or as soon as it is used."""
        expansions = self.run.counts[Counted.EXPANSIONS]
        due: list[Node] = []
        waiting: list[tuple[Node, int]] = []
        for node, made_at in self.judging:
            if node.expanded or made_at < expansions - 2:
                due.append(node)
            else:
                waiting.append((node, made_at))
        self.judging = waiting
        if due:
            self.run.gate.observe(sum(1 for n in due if n.expanded), len(due))

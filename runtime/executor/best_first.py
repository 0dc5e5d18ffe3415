"""Best-first search over every open node of the tree (a `search best_first` region).

Synchronous semantics (the graph's dependencies): the open nodes are the tree's nodes that are
generated, ready for the selection, not leaves and not yet expanded (the root first). Each
iteration runs the selection (its whole pipeline) over the open nodes in node order, expands
what it keeps with the children it gives them, waits until those children are ready (leaf-tested
and holding the values the selection reads: the reward barrier), and then runs the stop test
with `depth` = the deepest node so far. The loop also ends when no open node is left.

Speculation crosses the selection's reward edge only: while an iteration waits, each child that
arrives ready joins a trial selection over the open nodes and the children already in, and the
nodes that trial would expand next are pre-expanded at speculative priority (up to
ceil(layer_factor × gate multiplier × fan-out × lookahead) requests in flight). When the real
selection expands a pre-expanded node its children are promoted (a hit); the tree stays the
synchronous one, since the real selection never reads a speculative node.
"""

from __future__ import annotations

import functools
import math

from runtime.executor.query import QueryRun
from runtime.executor.rules import StrategyError
from runtime.executor.tree import Node


class BestFirstSearch:
    """Runs one query's best-first search on a QueryRun, with or without pre-expansion."""

    def __init__(self, run: QueryRun) -> None:
        self.run = run
        self.selection = run.plan.selection
        speculative = run.speculating and run.plan.select_reads.speculative
        self.lookahead = max(0, run.options.lookahead) if speculative else 0
        self.open: list[Node] = [run.root]
        self.waiting: list[Node] = []
        self.deepest = 0
        self.planned: set[int] = set()
        self.judging: list[Node] = []
        if self.lookahead:
            run.on_event = self.on_event

    async def search(self) -> None:
        run = self.run
        while self.open:
            candidates = sorted(self.open, key=lambda n: n.path)
            counts = self.selection.counts(run.counts, candidates, self.deepest, None)
            kids: list[Node] = []
            expanded: set[int] = set()
            for node, n in zip(candidates, counts, strict=True):
                if n > 0:
                    kids.extend(run.expand_main(node, n))
                    expanded.add(id(node))
            self.judge()
            if not kids:
                return
            self.open = [n for n in self.open if id(n) not in expanded]
            self.waiting = kids
            try:
                if self.lookahead:
                    self.plan()
                await run.wait_for(functools.partial(self.all_arrived, kids))
            finally:
                self.waiting = []
            run.check_alive(kids)
            for kid in kids:
                self.deepest = max(self.deepest, kid.depth)
                if kid.is_leaf:
                    run.add_leaf(kid)
                else:
                    self.open.append(kid)
            if run.stop_test(self.deepest):
                return

    def all_arrived(self, kids: list[Node]) -> bool:
        return all(self.run.arrived(k) or k.finished for k in kids)

    # -- speculation ---------------------------------------------------------------------

    def on_event(self, node: Node) -> None:
        if self.waiting and node.finished and not node.cancelled and self.run.waiting():
            self.plan()

    def plan(self) -> None:
        """Pre-expand what the selection would pick from the open nodes and the ready kids."""
        run = self.run
        if run.early_stopped or not run.ledger.may_grant():
            return
        ready = [k for k in self.waiting if k.live and run.arrived(k) and not k.is_leaf]
        if not ready:
            return
        trial = sorted([*self.open, *ready], key=lambda n: n.path)
        try:
            counts = self.selection.counts(run.counts, trial, self.deepest + 1, None)
            fan_out = max(1, self.selection.fan_out(run.counts))
        except StrategyError:
            return  # the main path evaluates the same and reports it where it fails
        cap = math.ceil(run.options.layer_factor * run.gate.multiplier * fan_out * self.lookahead)
        for node, n in zip(trial, counts, strict=True):
            if n > 0 and not node.expanded and node.parent is not None:
                if run.pre_expand(node, n, cap) and id(node) not in self.planned:
                    self.planned.add(id(node))
                    self.judging.append(node)

    def judge(self) -> None:
        """Gate update: a pre-expansion is kept if the main path expanded it by the next
        iteration after it was made."""
        if self.judging:
            self.run.gate.observe(sum(1 for n in self.judging if n.expanded), len(self.judging))
            self.judging = []

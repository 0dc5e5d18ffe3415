"""Breadth-first search by layers (beam search, DVTS, REBASE, ETS, ToT-BFS, best-of-N).

Synchronous semantics (the reference): layer d's nodes are all generated and scored (the reward
barrier), then the program's selection rule runs on the whole frontier (the layer's non-leaf
nodes) and the chosen nodes get their children, which form layer d+1. The stop test runs after
each layer with `depth` = the layer's index; an empty frontier also ends the search.

Speculation (SPEX, exact by default): whenever a node of the current layer, or of a speculative
layer at most `lookahead` layers ahead, arrives scored, the same selection rule runs on that
partial layer and the children it picks are requested at speculative priority, under the same
ids and seeds the synchronous search would use. An allocation rule (REBASE, ETS) splits a fixed
budget, so on a partial layer it would hand the few early nodes far more children than the
full layer will: with `estimate_missing` the layer's missing nodes join the rule as stand-ins
of the known nodes' mean softmax weight (measured on the sim, REBASE at concurrency 1: hit
rate 58% -> 74%, speedup 1.34x -> 1.52x). A partial layer's speculative children are capped
at ceil(layer_factor × gate multiplier × its scored candidates), counting the `children`
each pick of `top` gets and, for an estimated allocation, the children it gives when more;
the global ledger grants the slots. As the current layer fills, speculative children its
final selection can no longer keep are cancelled at once: TOP's partial selection is final
for a node it leaves out, and `selection.allocation_bounds` bounds REBASE's and ETS's final
counts. At the real selection, speculative children with an index below their parent's
real allocation are promoted; every other one is cancelled (aborted at once) with its subtree.
So the kept tree is exactly the synchronous one. In relaxed mode, a parent with a non-zero
allocation also keeps every live speculative child beyond its allocation (the artifact's
behaviour): the tree, and maybe the answer, then differ from the synchronous run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from compiler.expr import Counted, Value
from compiler.ir import SelectRule, SelectScope
from runtime.executor.plan import eval_float, eval_int
from runtime.executor.query import QueryRun
from runtime.executor.selection import (
    allocation_bounds,
    ancestor_chains,
    descending_order,
    each_counts,
    ets_counts,
    softmax_counts,
    top_counts,
)
from runtime.executor.tree import Node, NodeStatus
from runtime.executor.verdict import enough_leaves


class LayeredSearch:
    """Runs one query's layered search on a QueryRun, with or without speculation."""

    def __init__(self, run: QueryRun) -> None:
        self.run = run
        self.select = run.plan.select
        self.lookahead = max(0, run.options.lookahead) if run.speculating else 0
        self.relaxed = run.options.relaxed
        self.depth = 0  # index of the current main layer
        self.layer: list[Node] = [run.root]
        self.unscored = 0
        self.layer_leaves = 0
        self.failed: Node | None = None
        self.spec_at: dict[int, list[Node]] = {}  # depth -> speculative nodes launched there
        self.spec_launched: dict[int, int] = {}  # depth -> how many (for the usefulness gate)
        # A partial layer already rules out some children for good: TOP's partial selection
        # is final for a node it leaves out, and REBASE's allocation has an upper bound.
        self.prunable = self.select.rule in (
            SelectRule.TOP,
            SelectRule.SOFTMAX_ALLOCATE,
            SelectRule.ETS_ALLOCATE,
        )
        # Allocation rules split a fixed budget, so a partial layer over-allocates: estimate
        # the missing nodes instead.
        self.estimating = run.options.estimate_missing and self.select.rule in (
            SelectRule.SOFTMAX_ALLOCATE,
            SelectRule.ETS_ALLOCATE,
        )
        # Children one selected candidate yields: `top` gives each of its picks all of them, so
        # the per-layer cap counts them; an allocation splits a budget about the layer's size.
        self.fan_out = 1
        if self.select.rule is SelectRule.TOP and self.select.children is not None:
            self.fan_out = max(1, eval_int(self.select.children, {"depth": 0}, run.counts))
        run.on_event = self.on_event

    # -- the main loop -------------------------------------------------------------------

    async def search(self) -> None:
        run = self.run
        while True:
            frontier = [n for n in self.layer if not n.is_leaf]
            if not frontier:
                return
            allocation = self.real_allocation(frontier)
            self.form_layer(frontier, allocation)
            if not self.layer:
                return
            self.speculate_all()
            await run.wait_for(self.layer_settled)
            if self.failed is not None:
                QueryRun.check_alive([self.failed])
            if run.early_stopped:
                return
            run.counts[Counted.FRONTIER] = len(self.layer) - self.layer_leaves
            if run.plan.stopped(run.counts, self.depth):
                return

    def layer_settled(self) -> bool:
        return self.unscored == 0 or self.failed is not None or self.run.early_stopped

    def real_allocation(self, frontier: list[Node]) -> list[int]:
        """Children per frontier node, by the program's rule over the complete frontier."""
        plan = self.run.plan
        if self.depth == 0 and plan.root_children is not None:
            n = eval_int(plan.root_children, {"depth": 0}, self.run.counts)
            return [n] * len(frontier)
        return self.rule_counts(frontier, self.depth)

    def rule_counts(
        self, candidates: list[Node], depth: int, unknown: int = 0, prior: float = 0.0
    ) -> list[int]:
        """The selection rule applied to `candidates` (complete or partial), in node order.

        For an allocation rule, `unknown` more candidates with reward `prior` may join them
        after every real one (speculation's estimate of a partial layer's missing nodes); only
        the real candidates' counts are returned.
        """
        sel = self.select
        counts = self.run.counts
        names = {"depth": depth}
        role = sel.reward_role
        if sel.rule is SelectRule.EACH:
            assert sel.children is not None
            return each_counts(len(candidates), eval_int(sel.children, names, counts))
        rewards = [c.reward(role) for c in candidates]
        if unknown > 0 and sel.rule is not SelectRule.TOP:
            # Stand-ins share the best known candidate's ancestors (only ETS reads them).
            best = candidates[descending_order(rewards)[0]]
            chains = ancestor_chains([*(c.path for c in candidates), *([best.path] * unknown)])
            padded = [*rewards, *([prior] * unknown)]
            return self.allocate(padded, names, chains)[: len(candidates)]
        if sel.rule is SelectRule.TOP:
            assert sel.k is not None and sel.children is not None
            groups = (
                [c.path[0] if c.path else -1 for c in candidates]
                if sel.scope is SelectScope.SUBTREE
                else None
            )
            return top_counts(
                rewards,
                eval_int(sel.k, names, counts),
                eval_int(sel.children, names, counts),
                groups,
            )
        return self.allocate(rewards, names, ancestor_chains([c.path for c in candidates]))

    def allocate(
        self,
        rewards: list[float],
        names: Mapping[str, Value],
        ancestors: list[tuple[tuple[int, ...], ...]],
    ) -> list[int]:
        """An allocation rule's (softmax or ETS) counts for `rewards` in node order."""
        sel = self.select
        counts = self.run.counts
        assert sel.temperature is not None and sel.budget is not None
        temperature = eval_float(sel.temperature, names, counts)
        budget = eval_int(sel.budget, names, counts)
        if sel.rule is SelectRule.SOFTMAX_ALLOCATE:
            return softmax_counts(rewards, temperature, budget)
        keep_cost = None if sel.keep_cost is None else eval_float(sel.keep_cost, names, counts)
        return ets_counts(rewards, temperature, budget, keep_cost, ancestors)

    def form_layer(self, frontier: list[Node], allocation: list[int]) -> None:
        """The next layer: promote needed speculative children, request the rest, drop others."""
        run = self.run
        new: list[Node] = []
        kept_spec = 0
        for parent, n in zip(frontier, allocation, strict=True):
            for i, child in list(parent.children.items()):
                if not child.live:
                    continue
                if i < n or (self.relaxed and n > 0):
                    run.promote(child)
                    kept_spec += 1
                    new.append(child)
                else:
                    run.cancel(child)
            for i in range(n):
                existing = parent.children.get(i)
                if existing is None or not existing.live:
                    new.append(run.launch(parent, i, speculative=False))
            if n > 0:
                parent.expanded = True
                run.counts[Counted.EXPANSIONS] += 1
        # Leaves never expand; a stray speculative child of one (there is none) would leak.
        run.gate.observe(kept_spec, self.spec_launched.pop(self.depth + 1, 0))
        self.depth += 1
        self.spec_at.pop(self.depth, None)
        new.sort(key=lambda node: node.path)
        self.layer = new
        self.unscored = 0
        self.layer_leaves = 0
        for node in new:
            if node.status is NodeStatus.SCORED:
                if node.is_leaf:
                    self.layer_leaves += 1
                    run.add_leaf(node)
            else:
                self.unscored += 1
        run.counts[Counted.NODES] += len(new)
        if self.layer_leaves:
            self.check_early_stop()

    # -- events and speculation ----------------------------------------------------------

    def on_event(self, node: Node) -> None:
        if not node.finished:
            return  # only a node's final event (scored, failed or aborted) matters here
        if node.kept and node.depth == self.depth:
            if node.status is NodeStatus.SCORED:
                self.unscored -= 1
                if node.is_leaf:
                    self.layer_leaves += 1
                    self.run.add_leaf(node)
                    self.check_early_stop()
            elif not node.cancelled:
                self.failed = node
        if self.lookahead and node.status is NodeStatus.SCORED and not node.is_leaf:
            # Once the layer is complete the real selection runs next and requests at main
            # priority what speculation would request now.
            if not node.cancelled and not self.layer_settled():
                self.speculate(node.depth)

    def check_early_stop(self) -> None:
        """The artifact's rule: W = the leaves the search ends with (read off `until`, e.g.
        `count(leaves) >= width`; without such a bound, the leaves so far plus the current
        layer's open nodes), checked once more than W/4 leaves exist, left = W − leaves."""
        run = self.run
        found = len(run.leaves)
        left = run.plan.steps_until(Counted.LEAVES, run.counts, self.depth)
        if left is None:
            left = len(self.layer) - self.layer_leaves
        if not enough_leaves(found, found + left):
            return
        if run.settled(left, confidence=run.options.et_confidence):
            run.early_stopped = True

    def speculate_all(self) -> None:
        if not self.lookahead:
            return
        for depth in range(self.depth, self.depth + self.lookahead):
            self.speculate(depth)

    def parents_at(self, depth: int) -> list[Node]:
        if depth == self.depth:
            return self.layer
        nodes = self.spec_at.get(depth, [])
        live = [n for n in nodes if n.live]
        if len(live) != len(nodes):
            self.spec_at[depth] = live
        return live

    def speculate(self, depth: int) -> None:
        """Apply the rule to the partial layer at `depth` and prefetch the children it picks."""
        level = depth + 1 - self.depth
        if level < 1 or level > self.lookahead or self.run.early_stopped:
            return
        if depth == 0:
            return  # the root's children are all requested at once: nothing to run ahead of
        run = self.run
        parents = self.parents_at(depth)
        candidates = [p for p in parents if p.status is NodeStatus.SCORED and not p.is_leaf]
        if not candidates:
            return
        if depth > self.depth:
            candidates = [p for p in candidates if not p.cancelled]
        if depth == self.depth and self.prunable:
            self.prune(candidates, depth)
        if not run.ledger.may_grant():
            return
        unknown = 0
        prior = 0.0
        if self.estimating:
            # Nodes still to come in this layer: the current layer's unscored nodes, or, for a
            # speculative layer, the part of a layer the size of the current one not yet here.
            known = len(candidates)
            unknown = self.unscored if depth == self.depth else len(self.layer) - known
            prior = self.prior_reward(candidates, depth)
        counts = self.rule_counts(candidates, depth, max(0, unknown), prior)
        # The per-layer cap: layer_factor × the candidates so far (× the children `top` gives
        # each), or × the children the estimated allocation gives them, when that is more.
        base = len(candidates) * self.fan_out
        if self.estimating:
            base = max(base, sum(counts))
        cap = math.ceil(run.options.layer_factor * run.gate.multiplier * base)
        existing = 0
        if self.estimating:
            # Children an earlier, higher estimate asked for do not hold this layer's cap:
            # count only those the current estimate still wants.
            for parent, n in zip(candidates, counts, strict=True):
                for i, child in parent.children.items():
                    if i < n and child.live:
                        existing += 1
        else:
            for p in parents:
                for child in p.children.values():
                    if child.live:
                        existing += 1
        room = cap - existing
        if room <= 0:
            return
        wanted = self.wanted(candidates, counts, room)
        if not wanted:
            return
        granted = run.ledger.grant_spec(len(wanted))
        if not granted:
            return
        launched = self.spec_at.setdefault(depth + 1, [])
        for parent, i in wanted[:granted]:
            launched.append(run.launch(parent, i, speculative=True))
        self.spec_launched[depth + 1] = self.spec_launched.get(depth + 1, 0) + granted

    def wanted(
        self, candidates: list[Node], counts: list[int], room: int
    ) -> list[tuple[Node, int]]:
        """Up to `room` children i < counts[j] of candidate j not requested yet, round-robin by
        child index over the candidates by descending reward (a low index of a good parent is
        the likeliest to be kept)."""
        order = descending_order([c.reward(self.select.reward_role) for c in candidates])
        out: list[tuple[Node, int]] = []
        for i in range(max(counts, default=0)):
            for j in order:
                if counts[j] > i and i not in candidates[j].children:
                    out.append((candidates[j], i))
                    if len(out) >= room:
                        return out
        return out

    def prune(self, candidates: list[Node], depth: int) -> None:
        """Cancel the speculative children of the current layer that the real selection can no
        longer give their parent (cancelling is always safe: the real selection requests what it
        needs; this only stops work that would be wasted)."""
        run = self.run
        if self.select.rule is SelectRule.TOP:
            bounds = self.rule_counts(candidates, depth)
        else:
            bounds = self.allocation_bounds(candidates, depth)
        for parent, bound in zip(candidates, bounds, strict=True):
            if len(parent.children) > bound:
                for i, child in parent.children.items():
                    if i >= bound:
                        run.cancel(child)

    def allocation_bounds(self, candidates: list[Node], depth: int) -> list[int]:
        """`selection.allocation_bounds` for the current layer's scored candidates. The budget
        uses today's counts (in the shipped programs leaves only lower it); a bound that is
        ever too low only costs a re-request at the real selection, never exactness."""
        sel = self.select
        assert sel.temperature is not None and sel.budget is not None
        names: dict[str, Value] = {"depth": depth}
        counts = self.run.counts
        return allocation_bounds(
            [c.reward(sel.reward_role) for c in candidates],
            eval_float(sel.temperature, names, counts),
            eval_int(sel.budget, names, counts),
            ets=sel.rule is SelectRule.ETS_ALLOCATE,
        )

    def prior_reward(self, candidates: list[Node], depth: int) -> float:
        """The reward whose softmax weight is the mean weight of `candidates` (log-mean-exp):
        the expected weight of a node of the layer not scored yet."""
        sel = self.select
        assert sel.temperature is not None
        temperature = eval_float(sel.temperature, {"depth": depth}, self.run.counts)
        rewards = [c.reward(sel.reward_role) for c in candidates]
        top = max(rewards)
        if temperature <= 0:
            return top
        mean = sum(math.exp((r - top) / temperature) for r in rewards) / len(rewards)
        return top + temperature * math.log(mean)

"""Rollout search (MCTS, rStar-style): repeated UCT descents from the root with backup.

Synchronous semantics (the graph's dependencies): while the stop test (checked before each
rollout, e.g. `count(rollouts) >= 16`) is false, descend from the root. At a non-leaf node not yet
expanded, generate all of its `children` children and wait until they are leaf-tested (UCT's
candidates are the siblings); then enter the child UCT picks: the lowest-index unvisited child,
else the largest Q/N + c·sqrt(ln N_parent / N), ties to the lowest index. Entering a node waits
for its leaf test only (and so for a reward only when the leaf test reads one): UCT reads what
the backup carried, not the node's own reward. At a leaf, the BACKUP op waits for the reward it
reads (its REWARD in-edge) and carries the value (the leaf's aggregated reward, or the mean step
score of its path) up every node of the path, root included: N += 1, W += value. Leaves are
counted once, however often they are revisited.

Speculation: while the rollout waits (for sibling generation or a reward), the planner simulates
descents with the same UCT rule: first the current rollout's own continuation (same statistics,
so the same choices), then `lookahead` further descents, each adding a virtual visit (no value)
to the nodes of the paths before it. The first node each simulated descent finds unexpanded gets
its children requested at speculative priority. When the main path expands that node, those
children are promoted (a hit), so the tree stays the synchronous one.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

from compiler.expr import Counted
from compiler.ir import BackupAttrs
from runtime.executor.query import QueryRun, mean_step_score
from runtime.executor.selection import uct_choice
from runtime.executor.tree import Node
from runtime.executor.verdict import enough_rollouts


class RolloutSearch:
    """Runs one query's MCTS on a QueryRun, with or without speculative pre-expansion."""

    def __init__(self, run: QueryRun) -> None:
        self.run = run
        args = run.plan.args(run.counts)
        self.children = args.count("children", 0)
        self.exploration = args.number("exploration", 0)
        backup = run.plan.backup
        assert isinstance(backup, BackupAttrs)
        self.backup = backup
        self.lookahead = max(0, run.options.lookahead) if run.speculating else 0
        self.path: list[Node] = []
        self.waiting = False
        self.deepest = 0
        self.leaf_set: set[int] = set()
        self.rollouts_done = 0
        self.judging: list[tuple[Node, int]] = []  # pre-expanded parents and the rollout index
        self.planned: set[int] = set()  # ids of nodes already pre-expanded (for the gate)
        if self.lookahead:
            run.on_event = self.on_event

    async def search(self) -> None:
        run = self.run
        root = run.root
        while not run.stop_test(self.deepest):
            node = root
            self.path = [root]
            while True:
                if node is not root and not node.tested:
                    await self.wait(functools.partial(tested, node))
                    run.check_alive([node])
                if node.is_leaf:
                    if not run.backup_ready(node):
                        await self.wait(functools.partial(backup_ready, run, node))
                        run.check_alive([node])
                    break
                if not node.expanded:
                    kids = run.expand_main(node, self.children)
                    self.deepest = max(self.deepest, node.depth + 1)
                    await self.wait(functools.partial(all_tested, kids))
                    run.check_alive(kids)
                else:
                    kids = [node.children[i] for i in range(self.children)]
                stats = [(k.visits, k.value_sum) for k in kids]
                node = kids[uct_choice(stats, node.visits, self.exploration)]
                self.path.append(node)
            self.finish_rollout(node)
            if self.check_early_stop():
                return

    async def wait(self, predicate: Callable[[], bool]) -> None:
        if predicate():
            return
        self.waiting = True
        try:
            if self.lookahead:
                self.plan()
            await self.run.wait_for(predicate)
        finally:
            self.waiting = False

    def leaf_value(self, leaf: Node) -> float:
        if self.backup.source == "mean":
            return mean_step_score(leaf, self.backup.reward_role)
        return leaf.reward(self.backup.reward_role)

    def finish_rollout(self, leaf: Node) -> None:
        run = self.run
        value = self.leaf_value(leaf)
        for n in self.path:
            n.visits += 1
            n.value_sum += value
        run.counts[Counted.ROLLOUTS] += 1
        self.rollouts_done += 1
        if id(leaf) not in self.leaf_set:
            self.leaf_set.add(id(leaf))
            run.add_leaf(leaf)
        self.judge_pre_expansions()

    def check_early_stop(self) -> bool:
        run = self.run
        counts = run.counts
        left = run.plan.steps_until(Counted.ROLLOUTS, counts, self.deepest)
        if left is None:
            return False
        total = counts[Counted.ROLLOUTS] + left
        if not enough_rollouts(counts[Counted.ROLLOUTS], total):
            return False
        if run.settled(left, confidence=run.options.et_rollout_confidence, min_top_size=2):
            run.early_stopped = True
        return run.early_stopped

    # -- speculation ---------------------------------------------------------------------

    def on_event(self, node: Node) -> None:
        # Planning on the event that ends the wait would only race the main path.
        if self.waiting and not node.cancelled and self.run.waiting():
            self.plan()

    def spec_cap(self) -> int:
        run = self.run
        factor = run.options.layer_factor * run.gate.multiplier
        return math.ceil(factor * self.children * self.lookahead)

    def plan(self) -> None:
        """Simulate the next descents with virtual visits and pre-expand where they stop."""
        if self.run.early_stopped:
            return
        virtual: dict[int, int] = {}
        for _ in range(1 + self.lookahead):
            visited = self.simulate(virtual)
            for n in visited:
                virtual[id(n)] = virtual.get(id(n), 0) + 1

    def simulate(self, virtual: dict[int, int]) -> list[Node]:
        run = self.run
        node = run.root
        visited: list[Node] = []
        while True:
            visited.append(node)
            if node is not run.root and not node.tested:
                break
            if node.is_leaf:
                break
            kids = [node.children.get(i) for i in range(self.children)]
            if not node.expanded and any(k is None for k in kids):
                self.pre_expand(node)
                break
            live = [k for k in kids if k is not None and k.live]
            if len(live) < self.children:
                break
            stats = [(k.visits + virtual.get(id(k), 0), k.value_sum) for k in live]
            parent_visits = node.visits + virtual.get(id(node), 0)
            child = live[uct_choice(stats, parent_visits, self.exploration)]
            if not child.tested:
                break
            node = child
        return visited

    def pre_expand(self, node: Node) -> None:
        if (
            self.run.pre_expand(node, self.children, self.spec_cap())
            and id(node) not in self.planned
        ):
            self.planned.add(id(node))
            self.judging.append((node, self.rollouts_done))

    def judge_pre_expansions(self) -> None:
        """Gate update: a pre-expansion is judged once the rollout after the one that made it
        ends (kept if the main path expanded it by then), or as soon as it is used."""
        due: list[Node] = []
        waiting: list[tuple[Node, int]] = []
        for node, made_after in self.judging:
            if node.expanded or made_after < self.rollouts_done - 1:
                due.append(node)
            else:
                waiting.append((node, made_after))
        self.judging = waiting
        if due:
            self.run.gate.observe(sum(1 for n in due if n.expanded), len(due))


def tested(node: Node) -> bool:
    """The node's leaf test is done (or it ended without one)."""
    return node.tested or node.finished


def all_tested(nodes: list[Node]) -> bool:
    """Every node is leaf-tested (or has ended without it): an expansion's siblings are in."""
    return all(n.tested or n.finished for n in nodes)


def backup_ready(run: QueryRun, node: Node) -> bool:
    return run.backup_ready(node) or node.finished

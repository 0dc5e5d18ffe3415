"""Foresight: the chance that the real search keeps each child speculation could request now.

A layered group's next selections depend on rewards not known yet: those of the current layer's
nodes still generating, and of every node below. Foresight samples them. Each sample completes
the current layer with stand-ins for its unready nodes, runs the program's own selection rule
and stop test on it, forms the next layer from the children the rule picks (a child speculation
already has, scored, is itself; any other is a stand-in), and so on for `levels` layers. A
stand-in copies a donor, a ready node of the same depth drawn at random (of any depth while the
group has fewer than two there): its leaf status comes from the program's leaf test on the
donor's step (answered, end of sequence, its length added to the parent's tokens), and its
reward is its parent's plus the donor's own change over its parent (a PRM's score of a path
carries over to its continuations; measured on the sim, REBASE at concurrency 4, this took gap
closed from 0.41 to 0.49 against drawing the donor's reward as it is). Over the samples, the
share in which child i of a scored node is picked estimates that child's chance of being kept:
P(its parent is kept and the rule gives it more than i children). Any selection rule works as
written, a new one included: foresight only calls the rule.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Protocol, cast

from compiler.expr import Counted
from runtime.executor.rules import StrategyError
from runtime.executor.tree import Node


class Layering(Protocol):
    """What foresight reads of a layered group (LayerGroup satisfies it)."""

    depth: int
    layer: list[Node]

    def ready(self, node: Node) -> bool: ...

    def rule_counts(self, candidates: list[Node], depth: int) -> list[int]: ...

    def sees_leaves(self) -> bool: ...

    def stopped(self, counts: Mapping[Counted, int], depth: int) -> bool: ...

    def is_leaf(self, candidate: Node) -> bool: ...


class Standin:
    """A node not known yet, as one sample imagines it (the attributes the rules read)."""

    __slots__ = (
        "answered",
        "depth",
        "eos",
        "index",
        "is_leaf",
        "parent",
        "path",
        "path_tokens",
        "rewards",
        "tokens",
    )

    def __init__(self, parent: Node | Standin, index: int, donor: Node) -> None:
        self.parent = parent
        self.index = index
        self.path: tuple[int, ...] = (*parent.path, index)
        self.depth = len(self.path)
        self.rewards: dict[str, float] = _carried(parent, donor)
        self.answered = donor.answered
        self.eos = donor.eos
        self.tokens = donor.tokens
        self.path_tokens: int = parent.path_tokens + donor.tokens
        self.is_leaf = False

    def reward(self, role: str | None) -> float:
        if role is None:
            return 0.0
        return self.rewards.get(role, 0.0)


def _carried(parent: Node | Standin, donor: Node) -> dict[str, float]:
    """The donor's rewards moved onto `parent`: parent's reward + the donor's change over its
    own parent, role by role (the donor's own rewards where either parent is the root)."""
    ref = donor.parent
    if ref is None or ref.parent is None or parent.depth == 0:
        return donor.rewards
    base = parent.rewards
    return {
        role: base.get(role, 0.0) + value - ref.rewards.get(role, 0.0)
        for role, value in donor.rewards.items()
    }


class Pool:
    """Ready nodes by depth: the donors stand-ins are drawn from."""

    def __init__(self, nodes: Sequence[Node]) -> None:
        self.by_depth: dict[int, list[Node]] = {}
        self.every = list(nodes)
        for n in nodes:
            self.by_depth.setdefault(n.depth, []).append(n)

    def donor(self, depth: int, rng: random.Random) -> Node | None:
        same = self.by_depth.get(depth)
        if same and len(same) >= 2:
            return same[rng.randrange(len(same))]
        if not self.every:
            return None
        return self.every[rng.randrange(len(self.every))]


def foresee(
    group: Layering,
    known: Sequence[Node],
    counts: Mapping[Counted, int],
    *,
    samples: int,
    levels: int,
    rng: random.Random,
) -> list[tuple[Node, int, float]]:
    """(parent, child index, share of samples in which the search keeps that child) for the
    parents among `known` (ready nodes: the current layer's and speculation's below it) within
    `levels` layers of the current one."""
    pool = Pool(known)
    tally: dict[tuple[int, int], int] = {}
    if not pool.every or samples <= 0:
        return []
    for _ in range(samples):
        try:
            _one_future(group, pool, counts, levels, rng, tally)
        except StrategyError:
            return []  # the main path evaluates the same expression and reports it
    by_id = {id(n): n for n in known}
    return [
        (by_id[parent], i, hits / samples) for (parent, i), hits in tally.items() if parent in by_id
    ]


def _one_future(
    group: Layering,
    pool: Pool,
    counts: Mapping[Counted, int],
    levels: int,
    rng: random.Random,
    tally: dict[tuple[int, int], int],
) -> None:
    """One sampled future of the group's next `levels` selections, tallied into `tally`."""
    trial = dict(counts)
    layer: list[Node | Standin] = []
    new_leaves = 0  # leaves of `layer` the search has not counted yet
    for node in group.layer:
        if group.ready(node):
            layer.append(node)  # arrived: its leaves are counted already
            continue
        above = node.parent
        standin = _standin(group, pool, above, node.index, rng) if above else None
        if standin is None:
            return
        new_leaves += standin.is_leaf
        layer.append(standin)
    depth = group.depth
    for _ in range(levels):
        trial[Counted.LEAVES] = trial.get(Counted.LEAVES, 0) + new_leaves
        trial[Counted.FRONTIER] = sum(1 for c in layer if not c.is_leaf)
        if group.stopped(trial, depth):
            return
        frontier = [c for c in layer if not c.is_leaf]
        if not any(isinstance(c, Node) for c in frontier):
            return  # below stand-ins only stand-ins follow: no child there to request now
        if group.sees_leaves() and depth > 0:
            frontier = list(layer)
        # Stand-ins carry every attribute the rules read of a node.
        allocation = group.rule_counts(cast(list[Node], frontier), depth)
        following: list[Node | Standin] = []
        new_leaves = 0
        for parent, n in zip(frontier, allocation, strict=True):
            if parent.is_leaf:
                continue
            for i in range(n):
                child: Node | Standin | None = None
                if isinstance(parent, Node):
                    key = (id(parent), i)
                    tally[key] = tally.get(key, 0) + 1
                    found = parent.children.get(i)
                    if found is not None and group.ready(found):
                        child = found
                if child is None:
                    child = _standin(group, pool, parent, i, rng)
                    if child is None:
                        return
                new_leaves += child.is_leaf
                following.append(child)
        trial[Counted.NODES] = trial.get(Counted.NODES, 0) + len(following)
        layer = following
        depth += 1


def _standin(
    group: Layering, pool: Pool, parent: Node | Standin, index: int, rng: random.Random
) -> Standin | None:
    donor = pool.donor(parent.depth + 1, rng)
    if donor is None:
        return None
    standin = Standin(parent, index, donor)
    standin.is_leaf = group.is_leaf(cast(Node, standin))
    return standin

"""Foresight (runtime/executor/foresight.py): each child's chance of being kept, from sampled
futures of the program's own selection rule."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

import pytest

from compiler.expr import Counted
from runtime.executor.foresight import Standin, foresee
from runtime.executor.selection import softmax_counts, top_counts
from runtime.executor.tree import Node, NodeStatus

Rule = Callable[[Sequence[float]], list[int]]


class Group:
    """A layered group as foresight reads it: a layer at depth 1, a rule, no stop before 4."""

    def __init__(self, layer: list[Node], rule: Rule) -> None:
        self.depth = 1
        self.layer = layer
        self.rule = rule

    def ready(self, node: Node) -> bool:
        return node.status is NodeStatus.SCORED

    def rule_counts(self, candidates: list[Node], depth: int) -> list[int]:
        return self.rule([c.reward("prm") for c in candidates])

    def sees_leaves(self) -> bool:
        return False

    def stopped(self, counts: Mapping[Counted, int], depth: int) -> bool:
        return depth >= 4

    def is_leaf(self, candidate: Node) -> bool:
        return candidate.answered


def child(parent: Node, index: int, reward: float | None, tokens: int = 10) -> Node:
    node = Node("q", 7, parent, index, speculative=False, now=0.0)
    parent.children[index] = node
    node.tokens = tokens
    node.path_tokens = parent.path_tokens + tokens
    if reward is not None:
        node.status = NodeStatus.SCORED
        node.tested = True
        node.rewards = {"prm": reward}
    return node


def layer_of(rewards: Sequence[float | None]) -> tuple[Node, list[Node]]:
    root = Node.root("q", 7, "question", 0.0)
    return root, [child(root, i, r) for i, r in enumerate(rewards)]


def top(k: int, children: int) -> Rule:
    return lambda rewards: top_counts(rewards, k, children)


def chances(
    group: Group, known: Sequence[Node], levels: int = 1, seed: int = 0
) -> dict[tuple[tuple[int, ...], int], float]:
    found = foresee(
        group, known, {c: 0 for c in Counted}, samples=64, levels=levels, rng=random.Random(seed)
    )
    return {(parent.path, i): chance for parent, i, chance in found}


def test_a_complete_layer_is_certain() -> None:
    _, layer = layer_of([0.1, 0.9, 0.5, 0.7])
    got = chances(Group(layer, top(2, 3)), layer)
    assert got == {((1,), i): 1.0 for i in range(3)} | {((3,), i): 1.0 for i in range(3)}


def test_a_partial_layer_gives_chances_that_follow_the_rewards() -> None:
    _, layer = layer_of([0.9, 0.2, 0.5, None, None, None])
    group = Group(layer, top(2, 2))
    known = [n for n in layer if group.ready(n)]
    got = chances(group, known)
    best, worst, middle = (got.get(((i,), 0), 0.0) for i in (0, 1, 2))
    assert 0.0 <= worst <= middle <= best <= 1.0
    assert best > 0.5  # the best so far: only two of three unknown nodes beating it drop it
    assert middle < 1.0  # three unknown nodes may still beat it
    for path in ((0,), (1,), (2,)):
        assert got.get((path, 0), 0.0) == got.get((path, 1), 0.0)  # top gives all children
    assert chances(group, known, seed=3) == chances(group, known, seed=3)  # seeded


def test_a_later_child_is_never_likelier_than_an_earlier_one() -> None:
    _, layer = layer_of([0.8, 0.3, None, 0.6, None])
    group = Group(layer, lambda rewards: softmax_counts(rewards, 0.2, 8))
    got = chances(group, [n for n in layer if group.ready(n)])
    for (path, i), chance in got.items():
        assert 0.0 < chance <= 1.0
        if i > 0:
            assert chance <= got[(path, i - 1)]


def test_a_grandchild_is_kept_only_with_its_parent() -> None:
    _, layer = layer_of([0.9, 0.4, None, None])
    speculative = child(layer[0], 0, 0.8)
    group = Group(layer, top(2, 2))
    got = chances(group, [layer[0], layer[1], speculative], levels=2)
    assert 0.0 < got[(speculative.path, 0)] <= got[(layer[0].path, 0)]
    assert ((*layer[1].path, 0), 0) not in got  # a child that does not exist has no chance


def test_a_standin_carries_its_donors_step_change_onto_its_parent() -> None:
    root, layer = layer_of([0.5, 0.2])
    donor = child(layer[0], 0, 0.7, tokens=30)  # +0.2 over its parent
    standin = Standin(layer[1], 1, donor)
    assert standin.path == (1, 1)
    assert standin.reward("prm") == pytest.approx(0.4)
    assert standin.path_tokens == layer[1].path_tokens + 30
    first = Standin(root, 2, layer[0])  # under the root: the donor's own reward
    assert first.reward("prm") == 0.5

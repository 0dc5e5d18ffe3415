"""`spex bench` says, per mode, in how many queries it built the baseline's kept trees: exact
speculation must build all of them (issue 12), and a difference is named by query."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.cli.main import main
from runtime.records import TraceNode
from runtime.tree_identity import KeptTrees, compare_trees

REPO = Path(__file__).resolve().parents[1]


def node(query: str, node_id: str, text: str, outcome: str = "kept") -> TraceNode:
    return TraceNode(
        query_id=query,
        node_id=node_id,
        parent_id=None,
        depth=1,
        child_index=0,
        created_as="main",
        outcome=outcome,
        reward=0.5,
        tokens=len(text),
        is_leaf=False,
        answer=None,
        requested_at=0.0,
        generated_at=1.0,
        scored_at=1.0,
        promoted_at=None,
        text=text,
    )


def test_trees_differ_by_a_step_text_and_ignore_unkept_nodes() -> None:
    base, same, other = KeptTrees(), KeptTrees(), KeptTrees()
    for sink in (base, same, other):
        sink.node(node("q1", "q1/0", "2 + 3 = 5"))
        sink.node(node("q2", "q2/0", "4 * 2 = 8"))
    same.node(node("q1", "q1/1", "a cancelled speculative step", outcome="aborted"))
    other.node(node("q2", "q2/1", "an extra kept step"))
    assert compare_trees(base.trees, same.trees).identical == 2
    match = compare_trees(base.trees, other.trees)
    assert (match.identical, match.compared, match.differing) == (1, 2, ("q2",))
    changed = KeptTrees()
    changed.node(node("q1", "q1/0", "2 + 3 = 6"))
    assert compare_trees(base.trees, changed.trees).identical == 0


def test_bench_reports_identical_trees_for_exact_speculation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["bench", str(REPO / "programs" / "rebase.spx"), "--engine", "sim", "--limit", "4"]
    assert main([*argv, "--modes", "sync,spec", "--json", "--quiet"]) == 0
    modes = {m["mode"]: m for m in json.loads(capsys.readouterr().out)["modes"]}
    for mode in ("sync", "spec"):
        assert modes[mode]["trees_identical"] == modes[mode]["trees_compared"] == 4
        assert modes[mode]["trees_differing"] == []
    assert main([*argv, "--modes", "sync,spec", "--quiet"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "same trees" in table[1]
    spec_row = next(line for line in table if line.startswith("spec "))
    assert " 4/4 " in spec_row

"""Result rows that explain themselves: the chosen path, every leaf's answer, reward and class,
the vote's totals, search-and-learn's pred@n, the program's hash and parameters."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from reference_algorithms import compile_program, make_queries, run_program

from compiler.export_json import to_json
from compiler.ir import AnswerMethod, Equivalence
from runtime.answers import AnswerClasses, AnswerJudge
from runtime.executor.api import Mode
from runtime.explain import (
    AnswerRule,
    data_hash,
    dataset_position,
    explain,
    pred_sizes,
    program_hash,
)
from runtime.records import QueryResult


@dataclass
class Leaf:
    node_id: str
    path: tuple[int, ...]
    answer: str | None
    reward: float
    depth: int = 2
    path_tokens: int = 10
    rewards: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rewards = {"prm": self.reward}

    def steps(self) -> tuple[str, ...]:
        return (f"step of {self.node_id}", f"The answer is: {self.answer}")


def numeric_classes() -> AnswerClasses:
    return AnswerClasses(AnswerJudge(Equivalence.NUMERIC))


# Found in this order. Weighted, majority and best disagree at n = 4 and n = 8:
LEAVES = [
    Leaf("q/3", (3,), "7", 0.9),
    Leaf("q/0", (0,), "5", 0.3),
    Leaf("q/1", (1,), "5.0", 0.3),  # the same class as "5" under numeric equivalence
    Leaf("q/2", (2,), "5", 0.2),
    Leaf("q/4", (4,), None, 0.99),  # an unanswered leaf: counts towards n, never votes
    Leaf("q/5", (5,), "7", 0.5),
    Leaf("q/6", (6,), "9", 0.95),
    Leaf("q/7", (7,), "7", 0.1),
]


def test_pred_at_n_follows_search_and_learn_over_the_first_n_leaves_found() -> None:
    why = explain(
        LEAVES,
        AnswerRule(AnswerMethod.VOTE, "prm"),
        numeric_classes(),
        answer="7",
        reference="5",
    )
    p = why.preds
    assert pred_sizes(len(LEAVES)) == [1, 2, 4, 8]
    assert set(p) == {f"pred_{k}@{n}" for k in ("weighted", "maj", "naive") for n in (1, 2, 4, 8)}
    assert (p["pred_weighted@1"], p["pred_maj@1"], p["pred_naive@1"]) == ("7", "7", "7")
    # n = 2: 7 (0.9) against 5 (0.3); one vote each, so the majority's tie goes to the first.
    assert (p["pred_weighted@2"], p["pred_maj@2"], p["pred_naive@2"]) == ("7", "7", "7")
    # n = 4: 5 has three leaves (0.8 in all), 7 one leaf of 0.9.
    assert (p["pred_weighted@4"], p["pred_maj@4"], p["pred_naive@4"]) == ("7", "5", "7")
    # n = 8: 7 weighs 1.5 over 3 leaves, 5 weighs 0.8 over 3 (a count tie: the first class
    # met wins); the best answered leaf is 9 (0.95): the unanswered 0.99 leaf predicts nothing.
    assert (p["pred_weighted@8"], p["pred_maj@8"], p["pred_naive@8"]) == ("7", "7", "9")
    assert why.preds_correct["pred_maj@4"] is True and why.preds_correct["pred_maj@8"] is False


def test_candidates_classes_totals_and_the_chosen_path() -> None:
    why = explain(
        LEAVES,
        AnswerRule(AnswerMethod.VOTE, "prm"),
        numeric_classes(),
        answer="7",
        reference=None,
    )
    assert [c.node_id for c in why.candidates] == [leaf.node_id for leaf in LEAVES]
    assert [c.answer_class for c in why.candidates] == [0, 1, 1, 1, None, 0, 2, 0]
    assert [c.reward for c in why.candidates] == [leaf.reward for leaf in LEAVES]
    totals = [(t.answer, round(t.weight or 0, 6), t.count) for t in why.vote_totals]
    # Heaviest first; a class is shown by its first member in node order ("5" at q/0).
    assert totals == [("7", 1.5, 3), ("9", 0.95, 1), ("5", 0.8, 3)]
    # The chosen path is the best-rewarded leaf of the chosen answer's class.
    assert why.chosen_leaf == "q/3"
    assert why.chosen_path == ("step of q/3", "The answer is: 7")
    assert all(v is None for v in why.preds_correct.values())


def test_majority_totals_rank_by_count_and_best_programs_get_no_pred() -> None:
    majority = explain(
        LEAVES,
        AnswerRule(AnswerMethod.MAJORITY, None),
        numeric_classes(),
        answer="7",
        reference=None,
    )
    assert [t.count for t in majority.vote_totals] == [3, 3, 1]
    assert all(t.weight is None for t in majority.vote_totals)
    assert set(majority.preds) == {f"pred_maj@{n}" for n in (1, 2, 4, 8)}
    best = explain(
        LEAVES, AnswerRule(AnswerMethod.BEST, "prm"), numeric_classes(), answer="9", reference=None
    )
    assert best.preds == {} and best.chosen_leaf == "q/6"


def test_no_leaves_explain_nothing() -> None:
    why = explain(
        [], AnswerRule(AnswerMethod.VOTE, "prm"), numeric_classes(), answer=None, reference="1"
    )
    assert (why.chosen_leaf, why.chosen_path, why.candidates, why.preds) == (None, (), (), {})


def test_a_rebase_row_on_the_sim_holds_its_path_leaves_weights_and_pred() -> None:
    graph = compile_program("rebase", {"width": "8", "max_depth": "12"})
    queries = make_queries(3)
    capture = run_program(graph, queries, Mode.SPEC, concurrency=3)
    nodes = {(n.query_id, n.node_id): n for n in capture.trace.nodes}
    for query in queries:
        row = capture.results[query.query_id]
        assert row.status == "ok" and row.leaves == len(row.candidates) > 0
        # Every kept leaf of the trace is a candidate, with the trace's answer and reward.
        traced = {
            n.node_id
            for n in capture.trace.nodes
            if n.query_id == query.query_id and n.is_leaf and n.outcome == "kept"
        }
        assert {c.node_id for c in row.candidates} == traced
        for c in row.candidates:
            node = nodes[(query.query_id, c.node_id)]
            assert (c.answer, c.reward, c.depth) == (node.answer, node.reward, node.depth)
        # The vote's heaviest class is the answer, and the chosen path ends in it.
        assert row.vote_totals[0].answer == row.answer
        assert sum(t.count for t in row.vote_totals) == sum(
            c.answer is not None for c in row.candidates
        )
        assert row.chosen_leaf is not None and row.chosen_path
        chosen = nodes[(query.query_id, row.chosen_leaf)]
        assert chosen.answer is not None and chosen.is_leaf
        assert row.chosen_path[-1] == chosen.text
        assert row.answer is not None and row.answer in row.chosen_path[-1]
        assert len(row.chosen_path) == chosen.depth
        sizes = pred_sizes(row.leaves)
        assert sizes[-1] * 2 > row.leaves
        assert set(row.preds) == {
            f"pred_{k}@{n}" for k in ("weighted", "maj", "naive") for n in sizes
        }
        assert row.preds["pred_naive@1"] == row.candidates[0].answer
        assert row.program_hash == program_hash(graph)
        assert row.params["width"] == 8 and row.params["tau"] == 0.2
        # A row survives its own JSON.
        assert QueryResult.from_json(json.loads(json.dumps(row.to_json()))) == row


SMALL = {
    "rebase": {"width": "8", "max_depth": "12"},
    "beam_search": {"n": "8", "m": "2", "max_depth": "6"},
    "mcts": {"children": "3", "rollouts": "8", "max_depth": "4"},
    "tot_dfs": {"proposals": "3", "threshold": "0.45", "max_depth": "6", "max_steps": "10"},
}


@pytest.mark.parametrize("program", sorted(SMALL))
def test_sync_and_spec_explain_the_same_way(program: str) -> None:
    graph = compile_program(program, SMALL[program])
    queries = make_queries(2, first_row=5)
    sync = run_program(graph, queries, Mode.SYNC, concurrency=2)
    spec = run_program(graph, queries, Mode.SPEC, concurrency=2)
    for q in queries:
        a, b = sync.results[q.query_id], spec.results[q.query_id]
        assert (a.candidates, a.vote_totals, a.preds, a.chosen_path) == (
            b.candidates,
            b.vote_totals,
            b.preds,
            b.chosen_path,
        )


def test_program_hash_is_the_compiled_graphs_and_follows_parameters() -> None:
    graph = compile_program("rebase", {"width": "8"})
    assert program_hash(graph) == data_hash(json.loads(to_json(graph)))
    assert program_hash(graph) == program_hash(compile_program("rebase", {"width": "8"}))
    assert program_hash(graph) != program_hash(compile_program("rebase", {"width": "4"}))
    assert program_hash(graph) != program_hash(compile_program("beam_search"))


def test_dataset_position_from_query_ids() -> None:
    assert dataset_position("17") == (17, 0)
    assert dataset_position("17#2") == (17, 2)
    assert dataset_position("q3") == (None, 0)


def test_rows_written_before_the_explanation_fields_still_read() -> None:
    graph = compile_program("rebase", {"width": "4", "max_depth": "4"})
    row = run_program(graph, make_queries(1), Mode.SYNC).results["q0"].to_json()
    old = {k: v for k, v in row.items() if k in OLD}
    back = QueryResult.from_json(old)
    assert back is not None and back.candidates == () and back.program_hash is None
    assert QueryResult.from_json({**old, "candidates": [{"nonsense": 1}]}) is None
    assert QueryResult.from_json({"query_id": "1"}) is None


OLD = {
    "query_id", "question", "answer", "reference", "correct", "status", "error", "mode", "seed",
    "latency_s", "started_at", "finished_at", "tokens_generated", "main_tokens",
    "spec_tokens_kept", "spec_tokens_wasted", "spec_requests", "spec_hits", "hit_rate",
    "generate_calls", "reward_calls", "nodes", "leaves", "early_stopped",
}  # fmt: skip


def test_the_row_in_the_docs_is_a_whole_current_row() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "python-api.md").read_text()
    block = text.split("```json\n", 1)[1].split("```", 1)[0]
    row = json.loads(block)
    parsed = QueryResult.from_json(row)
    assert parsed is not None and set(row) == set(parsed.to_json())
    assert row["candidates"] and row["chosen_path"] and row["preds"]

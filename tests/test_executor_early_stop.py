"""Answer aggregation and SPEX's adaptive early termination (spex-techniques.md (iii))."""

from __future__ import annotations

import statistics

from hypothesis import given, settings
from hypothesis import strategies as st
from reference_algorithms import compile_program, make_queries, run_program

from compiler.ir import AnswerMethod, Equivalence
from runtime.answers import AnswerClasses, AnswerJudge
from runtime.executor.api import Mode, SpecOptions
from runtime.executor.verdict import (
    ScoredAnswer,
    choose_answer,
    early_stop_reason,
    enough_leaves,
    enough_rollouts,
    settled,
)


def classes() -> AnswerClasses:
    return AnswerClasses(AnswerJudge(Equivalence.MATH))


def leaves(*items: tuple[str | None, float]) -> list[ScoredAnswer]:
    """Leaves whose reward and ET weight are the same number."""
    return [ScoredAnswer(a, w, w) for a, w in items]


def test_vote_sums_rewards_over_equivalent_answers() -> None:
    found = leaves(("\\frac{1}{2}", 0.3), ("7", 0.5), ("0.5", 0.3), ("\\dfrac{1}{2}", 0.1))
    # 1/2 in three spellings weighs 0.7 against 7's 0.5; the first spelling represents it.
    assert choose_answer(found, AnswerMethod.VOTE, classes()) == "\\frac{1}{2}"
    assert choose_answer(found, AnswerMethod.BEST, classes()) == "7"
    assert choose_answer(found, AnswerMethod.MAJORITY, classes()) == "\\frac{1}{2}"


def test_ties_go_to_the_first_in_node_order_and_unanswered_leaves_are_ignored() -> None:
    found = leaves((None, 0.99), ("3", 0.4), ("4", 0.4))
    assert choose_answer(found, AnswerMethod.VOTE, classes()) == "3"
    assert choose_answer(found, AnswerMethod.BEST, classes()) == "3"
    assert choose_answer(leaves((None, 0.9)), AnswerMethod.VOTE, classes()) is None
    assert choose_answer([], AnswerMethod.MAJORITY, classes()) is None


def test_settled_needs_a_gap_no_future_leaves_can_close() -> None:
    found = leaves(("5", 0.95), ("5", 0.95), ("5", 0.95), ("6", 0.5))
    # gap 2.85 - 0.5 = 2.35; bound α·left·mean(second) = left·0.5
    assert settled(found, classes(), left=4, alpha=1.0, confidence=0.9)
    assert not settled(found, classes(), left=5, alpha=1.0, confidence=0.9)
    assert not settled(found, classes(), left=4, alpha=1.5, confidence=0.9)


def test_settled_needs_a_confident_top_class() -> None:
    found = leaves(("5", 0.95), ("5", 0.85), ("5", 0.8), ("6", 0.1))
    assert not settled(found, classes(), left=1, alpha=1.0, confidence=0.9)  # median 0.85
    assert settled(found, classes(), left=1, alpha=1.0, confidence=0.8)


def test_a_lone_class_is_measured_against_zero() -> None:
    # The artifact: with one answer class the runner-up's total and mean are 0, so the bound
    # is 0 and any confident class of two or more leaves stops, however many are to come.
    found = leaves(("5", 0.95), ("5", 0.97))
    assert settled(found, classes(), left=14, alpha=1.0, confidence=0.9)
    assert not settled(leaves(("5", 0.97)), classes(), left=0, alpha=1.0, confidence=0.9)


def test_the_leading_class_needs_two_leaves_in_layered_search() -> None:
    one = leaves(("5", 0.99), ("6", 0.0))
    assert not settled(one, classes(), left=0, alpha=1.0, confidence=0.9)
    two = leaves(("5", 0.99), ("5", 0.99), ("6", 0.0))
    assert settled(two, classes(), left=0, alpha=1.0, confidence=0.9)


def test_issue_example_w16_four_leaves_is_not_checked_yet() -> None:
    # W = 16, leaves 7, 7, 7 at 0.95 and 12 at 0.05: the artifact checks only once more than
    # W/4 = 4 leaves exist, so four leaves never stop the search.
    found = leaves(("7", 0.95), ("7", 0.95), ("7", 0.95), ("12", 0.05))
    assert not enough_leaves(len(found), 16)
    assert enough_leaves(5, 16)


def test_issue_example_w8_three_agreeing_leaves_stop() -> None:
    # W = 8, three leaves all "7" at 0.95: 3 > 8/4, the class has 3 > 1 members, median 0.95
    # > 0.9, and with no second class the bound is 0 < 2.85: stop, and say why.
    found = leaves(("7", 0.95), ("7", 0.95), ("7", 0.95))
    assert enough_leaves(len(found), 8)
    reason = early_stop_reason(found, classes(), left=5, alpha=1.0, confidence=0.9)
    assert reason is not None and "'7'" in reason and "0.950 > 0.9" in reason


def test_rollout_search_needs_more_than_two_votes() -> None:
    two = leaves(("5", 0.99), ("5", 0.99))
    three = leaves(("5", 0.99), ("5", 0.99), ("5", 0.99))
    assert not settled(two, classes(), left=0, alpha=1.0, confidence=0.95, min_top_size=2)
    assert settled(three, classes(), left=0, alpha=1.0, confidence=0.95, min_top_size=2)


def test_rollout_search_is_checked_only_past_half_its_rollouts() -> None:
    # The artifact checks after rollout index i (0-based) once i > R/2.
    assert not enough_rollouts(9, 16)
    assert enough_rollouts(10, 16)


@settings(max_examples=300, deadline=None)
@given(
    found=st.lists(st.tuples(st.sampled_from(["1", "2", "3", None]), st.floats(0, 1)), max_size=12),
    left=st.integers(min_value=0, max_value=16),
    alpha=st.floats(min_value=0, max_value=2),
)
def test_settled_matches_the_rule_written_out(
    found: list[tuple[str | None, float]], left: int, alpha: float
) -> None:
    group: dict[str, list[float]] = {}
    for answer, weight in found:
        if answer is not None:
            group.setdefault(answer, []).append(weight)
    expected = False
    if group:
        ranked = sorted(group.values(), key=lambda ws: -sum(ws))  # stable: node order on ties
        top = ranked[0]
        second = ranked[1] if len(ranked) > 1 else []
        mean_second = sum(second) / len(second) if second else 0.0
        expected = (
            len(top) >= 2
            and statistics.median(top) > 0.9
            and sum(top) - sum(second) > alpha * left * mean_second
        )
    got = settled(leaves(*found), classes(), left=left, alpha=alpha, confidence=0.9)
    assert got == expected
    # More leaves to come never makes a stop likelier.
    if not got:
        assert not settled(leaves(*found), classes(), left=left + 1, alpha=alpha, confidence=0.9)


def test_early_termination_stops_searches_and_aborts_their_work() -> None:
    graph = compile_program("rebase", {"width": "16", "max_depth": "12"})
    queries = make_queries(8, first_row=100, seed=2)
    # The sim's PRM rarely gives a median step-min weight above 0.9; a lower bar makes the
    # rule fire here so its effect can be checked.
    options = SpecOptions(et_confidence=0.4)
    et = run_program(graph, queries, Mode.SPEC_ET, concurrency=4, options=options)
    spec = run_program(graph, queries, Mode.SPEC, concurrency=4, options=options)
    sync = run_program(graph, queries, Mode.SYNC, concurrency=4)
    assert spec.stats.early_stopped == 0 and sync.stats.early_stopped == 0
    stopped = [r for r in et.results.values() if r.early_stopped]
    assert stopped, "early termination never fired"
    for row in stopped:
        assert row.early_stop_reason is not None and "settled" in row.early_stop_reason
        full = sync.results[row.query_id]
        assert row.status == "ok"
        assert row.leaves < full.leaves
        assert row.answer is not None
        # The same decisions up to the stop: its tree is a part of the synchronous one.
        assert et.kept(row.query_id) < sync.kept(row.query_id)
        requests = [r for r in et.trace.requests if r.query_id == row.query_id]
        assert all(r.ended_at is not None and r.ended_at <= row.finished_at for r in requests)
    for qid, row in et.results.items():
        if not row.early_stopped:
            assert row.early_stop_reason is None
            assert row.answer == sync.results[qid].answer
    assert sum(r.latency_s for r in et.results.values()) < sum(
        r.latency_s for r in spec.results.values()
    )


def test_early_termination_in_rollout_search_waits_for_votes() -> None:
    graph = compile_program("mcts", {"children": "3", "rollouts": "12", "max_depth": "4"})
    queries = make_queries(8, first_row=100, seed=2)
    et = run_program(
        graph, queries, Mode.SPEC_ET, concurrency=4, options=SpecOptions(et_rollout_confidence=0.4)
    )
    stopped = [r for r in et.results.values() if r.early_stopped]
    assert stopped, "early termination never fired"
    for row in stopped:
        assert row.leaves >= 3  # the top class needs more than two members

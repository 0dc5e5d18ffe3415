"""Answer aggregation and SPEX's adaptive early termination (spex-techniques.md (iii))."""

from __future__ import annotations

from reference_algorithms import compile_program, make_queries, run_program

from compiler.ir import AnswerMethod, Equivalence
from runtime.answers import AnswerClasses, AnswerJudge
from runtime.executor.api import Mode, SpecOptions
from runtime.executor.verdict import ScoredAnswer, choose_answer, settled


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


def test_a_lone_class_is_measured_against_its_own_mean() -> None:
    found = leaves(("5", 0.95), ("5", 0.97))
    # no second class: the bound uses the top class's mean weight (0.96)
    assert not settled(found, classes(), left=2, alpha=1.0, confidence=0.9)
    assert settled(found, classes(), left=1, alpha=1.0, confidence=0.9)


def test_rollout_search_needs_more_than_two_votes() -> None:
    two = leaves(("5", 0.99), ("5", 0.99))
    three = leaves(("5", 0.99), ("5", 0.99), ("5", 0.99))
    assert not settled(two, classes(), left=0, alpha=1.0, confidence=0.95, min_top_size=2)
    assert settled(three, classes(), left=0, alpha=1.0, confidence=0.95, min_top_size=2)


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

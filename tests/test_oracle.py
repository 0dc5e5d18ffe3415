"""The oracle: the critical path of a query's kept tree with sync's timings, and gap closed."""

from __future__ import annotations

import pytest

from runtime.oracle import (
    QueryGap,
    QueryTrace,
    compare_to_oracle,
    oracle_latencies,
    oracle_latency,
)
from runtime.records import QueryResult, TraceNode, TraceRequest


def node(nid: str, parent: str | None, *, leaf: bool = False, outcome: str = "kept") -> TraceNode:
    return TraceNode(
        query_id="q",
        node_id=nid,
        parent_id=parent,
        depth=nid.count("."),
        child_index=0,
        created_as="main",
        outcome=outcome,
        reward=None,
        tokens=10,
        is_leaf=leaf,
        answer="1" if leaf else None,
        requested_at=0.0,
        generated_at=None,
        scored_at=None,
        promoted_at=None,
    )


def req(nid: str, kind: str, start: float, end: float, *, how: str = "done") -> TraceRequest:
    return TraceRequest(
        query_id="q",
        request_id=f"{nid}:{kind}:{start}",
        node_id=nid,
        kind=kind,
        priority="main",
        enqueued_at=start - 0.5,  # queueing before service is not generation time
        started_at=start,
        ended_at=end,
        end=how,
        promoted=False,
        tokens=10,
    )


def tree() -> QueryTrace:
    """root -> a (2 s) -> a.x (3 s, leaf, reward 1 s); root -> b (4 s) -> b.y (0.5 s, leaf,
    reward 0.25 s); a discarded speculative child c (10 s) that the oracle must ignore."""
    return QueryTrace(
        nodes=[
            node("r", None),
            node("a", "r"),
            node("a.x", "a", leaf=True),
            node("b", "r"),
            node("b.y", "b", leaf=True),
            node("c", "r", leaf=True, outcome="unused"),
        ],
        requests=[
            req("a", "generate", 10.0, 12.0),
            req("a", "reward", 12.0, 12.2),  # an inner node's score: not on the oracle path
            req("a.x", "generate", 20.0, 23.0),
            req("a.x", "reward", 30.0, 31.0),
            req("b", "generate", 10.0, 14.0),
            req("b.y", "generate", 40.0, 40.5),
            req("b.y", "reward", 41.0, 41.25),
            req("c", "generate", 10.0, 20.0),
        ],
    )


def test_oracle_is_the_kept_trees_critical_path_plus_leaf_rewards() -> None:
    # a.x path: 2 + 3 + 1 = 6; b.y path: 4 + 0.5 + 0.25 = 4.75; the unused c (10 s) is ignored.
    assert oracle_latency(tree()) == pytest.approx(6.0)


def test_generation_times_come_from_the_sync_run_when_given() -> None:
    spec = tree()
    sync = QueryTrace(
        nodes=spec.nodes,
        requests=[
            req("a", "generate", 0.0, 1.0),
            req("a.x", "generate", 1.0, 2.0),
            req("a.x", "reward", 2.0, 2.5),
            req("b", "generate", 0.0, 5.0),
            # b.y has no sync record: its own time (0.5 s generation, 0.25 s reward) is used.
        ],
    )
    # a.x: 1 + 1 + 0.5 = 2.5; b.y: 5 + 0.5 + 0.25 = 5.75.
    assert oracle_latency(spec, sync) == pytest.approx(5.75)


def test_aborted_requests_and_parallel_reward_roles() -> None:
    trace = QueryTrace(
        nodes=[node("r", None), node("a", "r", leaf=True)],
        requests=[
            req("a", "generate", 0.0, 9.0, how="aborted"),  # a cancelled attempt does not count
            req("a", "generate", 10.0, 12.0),
            req("a", "reward", 12.0, 13.0),  # two roles scored side by side: the longer counts
            req("a", "reward", 12.0, 12.5),
        ],
    )
    assert oracle_latency(trace) == pytest.approx(3.0)


def test_a_deep_chain_does_not_recurse() -> None:
    depth = 3000
    nodes = [node("n0", None)] + [
        node(f"n{i}", f"n{i - 1}", leaf=i == depth) for i in range(1, depth + 1)
    ]
    requests = [req(f"n{i}", "generate", 0.0, 0.01) for i in range(1, depth + 1)]
    assert oracle_latency(QueryTrace(nodes, requests)) == pytest.approx(30.0)


def row(qid: str, latency: float, status: str = "ok") -> QueryResult:
    return QueryResult(
        query_id=qid,
        question="?",
        answer="1",
        reference="1",
        correct=True,
        status=status,
        error=None,
        mode="sync",
        seed=0,
        latency_s=latency,
        started_at=0.0,
        finished_at=latency,
        tokens_generated=0,
        main_tokens=0,
        spec_tokens_kept=0,
        spec_tokens_wasted=0,
        spec_requests=0,
        spec_hits=0,
        hit_rate=None,
        generate_calls=0,
        reward_calls=0,
        nodes=0,
        leaves=0,
        early_stopped=False,
    )


def test_gap_closed_per_query_median_and_pooled() -> None:
    oracle = {"1": 4.0, "2": 9.0, "10": 1.0, "3": 5.0}
    sync = [row("1", 10.0), row("2", 10.0), row("10", 3.0), row("3", 5.0)]
    spec = [row("10", 2.0), row("1", 7.0), row("2", 9.5), row("3", 5.0), row("4", 1.0)]
    summary = compare_to_oracle(oracle, sync, spec)
    # Dataset order; query 4 has no sync row and no oracle, so it is left out.
    assert [q.query_id for q in summary.queries] == ["1", "2", "3", "10"]
    by_id = {q.query_id: q.gap_closed for q in summary.queries}
    assert by_id["1"] == pytest.approx(0.5)  # (10 - 7) / (10 - 4)
    assert by_id["2"] == pytest.approx(0.5)  # (10 - 9.5) / (10 - 9)
    assert by_id["10"] == pytest.approx(0.5)  # (3 - 2) / (3 - 1)
    assert by_id["3"] is None  # oracle equals sync: no gap to close
    assert summary.gap_closed_median == pytest.approx(0.5)
    # Pooled: (3 + 0.5 + 1 + 0) / (6 + 1 + 2 + 0)
    assert summary.gap_closed_pooled == pytest.approx(4.5 / 9.0)
    assert summary.oracle_speedup == pytest.approx(28.0 / 19.0)
    assert summary.to_json()["per_query"][0] == {
        "query_id": "1",
        "sync_s": 10.0,
        "latency_s": 7.0,
        "oracle_s": 4.0,
        "gap_closed": 0.5,
    }


def test_failed_queries_are_left_out_and_a_slower_mode_closes_a_negative_gap() -> None:
    summary = compare_to_oracle(
        {"1": 4.0, "2": 4.0},
        [row("1", 10.0), row("2", 10.0)],
        [row("1", 12.0), row("2", 1.0, "failed")],
    )
    assert [q.query_id for q in summary.queries] == ["1"]
    assert summary.gap_closed_median == pytest.approx(-2.0 / 6.0)
    assert QueryGap("x", 1.0, 1.0, 1.0).gap_closed is None


def test_oracle_latencies_covers_every_traced_query() -> None:
    assert oracle_latencies({"q": tree(), "empty": QueryTrace()}) == {
        "q": pytest.approx(6.0),
        "empty": 0.0,
    }

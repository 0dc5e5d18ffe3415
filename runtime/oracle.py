"""The oracle: how fast a query could have been answered with perfect foresight.

For the final kept tree of a query, the oracle latency is its critical path when every node
starts the moment its parent's step exists, batch slots are free, and each node's generation
takes as long as it took in the sync run; every kept leaf then adds the time of its reward call
(the answer needs every leaf scored). Inner nodes' reward calls are not on the path: foresight
knows which children the selection keeps without waiting for their scores.

Gap closed compares a speculative run with the two ends of that range, per query:
(T_sync − T_spec) / (T_sync − T_oracle). 1 means speculation reached the oracle, 0 that it
gained nothing. The median over queries and the pooled figure (sums of numerator and
denominator over all queries) are both reported: a plain mean would be ruled by the queries
whose oracle almost equals sync, where a tiny denominator makes the ratio swing wildly.

Everything here is pure: it reads trace records (`TraceNode`, `TraceRequest`) and result rows.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.records import QueryResult, TraceNode, TraceRequest

# A query whose oracle is within this many engine seconds of sync has no gap to close.
MIN_GAP_S = 1e-9


@dataclass
class QueryTrace:
    """The trace records of one query: its nodes and its engine requests."""

    nodes: list[TraceNode] = field(default_factory=list)
    requests: list[TraceRequest] = field(default_factory=list)


class TraceCollector:
    """A trace sink that keeps each query's records in memory, grouped by query id."""

    def __init__(self) -> None:
        self.queries: dict[str, QueryTrace] = defaultdict(QueryTrace)

    def run(self, record: object) -> None:
        """The run's header (trace v2): the oracle needs only the queries' records."""

    def node(self, record: TraceNode) -> None:
        self.queries[record.query_id].nodes.append(record)

    def request(self, record: TraceRequest) -> None:
        self.queries[record.query_id].requests.append(record)


def _durations(requests: Iterable[TraceRequest], kind: str) -> dict[str, float]:
    """Per node, the longest finished request of `kind` (start of service to its end)."""
    out: dict[str, float] = {}
    for r in requests:
        if r.kind != kind or r.end != "done" or r.started_at is None or r.ended_at is None:
            continue
        out[r.node_id] = max(out.get(r.node_id, 0.0), r.ended_at - r.started_at)
    return out


def oracle_latency(trace: QueryTrace, timing: QueryTrace | None = None) -> float:
    """The critical path of `trace`'s kept tree, with generation and reward times taken from
    `timing` (the sync run of the same query) where it has the node, else from `trace` itself.

    Reward calls of a leaf for several roles run side by side, so a leaf adds the longest one.
    """
    own_gen = _durations(trace.requests, "generate")
    own_reward = _durations(trace.requests, "reward")
    ref = timing if timing is not None else trace
    gen = {**own_gen, **_durations(ref.requests, "generate")}
    reward = {**own_reward, **_durations(ref.requests, "reward")}
    kept = {n.node_id: n for n in trace.nodes if n.outcome == "kept"}
    finish: dict[str, float] = {}

    def finish_of(node_id: str) -> float:
        # Iterative walk up to the first node with a known finish (trees can be 40+ deep).
        chain: list[str] = []
        current: str | None = node_id
        while current is not None and current not in finish and current in kept:
            chain.append(current)
            current = kept[current].parent_id
        base = finish.get(current, 0.0) if current is not None else 0.0
        for nid in reversed(chain):
            base += gen.get(nid, 0.0)
            finish[nid] = base
        return finish[node_id]

    latest = 0.0
    for node_id, node in kept.items():
        done = finish_of(node_id)
        if node.is_leaf:
            done += reward.get(node_id, 0.0)
        latest = max(latest, done)
    return latest


@dataclass(frozen=True)
class QueryGap:
    """One query's three latencies and how much of the sync-to-oracle gap the mode closed."""

    query_id: str
    sync_s: float
    mode_s: float
    oracle_s: float

    @property
    def gap_closed(self) -> float | None:
        gap = self.sync_s - self.oracle_s
        return (self.sync_s - self.mode_s) / gap if gap > MIN_GAP_S else None


@dataclass(frozen=True)
class OracleSummary:
    """A mode's queries against the oracle of the baseline's traces."""

    queries: tuple[QueryGap, ...]

    @property
    def oracle_speedup(self) -> float | None:
        """Sum of sync latencies over the sum of oracle latencies (pooled over queries)."""
        oracle = sum(q.oracle_s for q in self.queries)
        return sum(q.sync_s for q in self.queries) / oracle if oracle > 0 else None

    @property
    def gap_closed_median(self) -> float | None:
        gaps = [g for q in self.queries if (g := q.gap_closed) is not None]
        return statistics.median(gaps) if gaps else None

    @property
    def gap_closed_pooled(self) -> float | None:
        gap = sum(q.sync_s - q.oracle_s for q in self.queries)
        if gap <= MIN_GAP_S:
            return None
        return sum(q.sync_s - q.mode_s for q in self.queries) / gap

    def to_json(self) -> dict[str, Any]:
        return {
            "oracle_speedup": self.oracle_speedup,
            "gap_closed_median": self.gap_closed_median,
            "gap_closed_pooled": self.gap_closed_pooled,
            "oracle_latency_p50_s": (
                statistics.median(q.oracle_s for q in self.queries) if self.queries else None
            ),
            "per_query": [
                {
                    "query_id": q.query_id,
                    "sync_s": q.sync_s,
                    "latency_s": q.mode_s,
                    "oracle_s": q.oracle_s,
                    "gap_closed": q.gap_closed,
                }
                for q in self.queries
            ],
        }


def oracle_latencies(baseline: Mapping[str, QueryTrace]) -> dict[str, float]:
    """Each query's oracle latency from the baseline (sync) run's own traces."""
    return {qid: oracle_latency(trace) for qid, trace in baseline.items()}


def compare_to_oracle(
    oracle: Mapping[str, float],
    baseline_rows: Sequence[QueryResult],
    mode_rows: Sequence[QueryResult],
) -> OracleSummary:
    """Pair each query ok in both runs with its oracle; queries without a trace are left out."""
    sync = {r.query_id: r.latency_s for r in baseline_rows if r.status == "ok"}
    gaps = [
        QueryGap(r.query_id, sync[r.query_id], r.latency_s, oracle[r.query_id])
        for r in mode_rows
        if r.status == "ok" and r.query_id in sync and r.query_id in oracle
    ]
    # Dataset order ("2" before "10"), not completion order, so reports are stable.
    return OracleSummary(tuple(sorted(gaps, key=lambda g: (len(g.query_id), g.query_id))))

"""What a run writes: one result row per query, and trace records of nodes and engine requests.

These are the stable, documented output formats (results JSONL, trace JSONL); the field names
are part of spex's interface.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class QueryResult:
    """One row of the results JSONL, written as soon as its query finishes."""

    query_id: str  # stable id: dataset line number and repeat index, e.g. "17" or "17#2"
    question: str
    answer: str | None  # the chosen answer; None if no leaf had one
    reference: str | None  # the dataset's answer, when it has one
    correct: bool | None  # None when there is no reference
    status: str  # "ok" | "failed"
    error: str | None  # why the query failed, when it did
    mode: str  # "sync" | "spec" | "spec+et"
    seed: int
    latency_s: float  # engine clock, from the query's start to its answer
    started_at: float
    finished_at: float
    tokens_generated: int  # completion tokens of every generate request that finished
    main_tokens: int  # tokens of nodes the search kept
    spec_tokens_kept: int  # speculative tokens later promoted into the search
    spec_tokens_wasted: int  # speculative tokens aborted or never used
    spec_requests: int
    spec_hits: int  # speculative requests promoted
    hit_rate: float | None  # spec_hits / spec_requests; None without speculation
    generate_calls: int
    reward_calls: int
    nodes: int  # nodes in the search tree (kept)
    leaves: int
    early_stopped: bool  # spec+et stopped the search before its own bound
    early_stop_reason: str | None = None  # why spec+et stopped it (the rule's numbers)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TraceNode:
    """A node of a query's search tree, as the trace records it."""

    query_id: str
    node_id: str  # deterministic identity: query, parent and child index ("q17/0.3.1")
    parent_id: str | None
    depth: int
    child_index: int
    created_as: str  # "main" | "speculative"
    outcome: str  # "kept" | "aborted" | "unused"
    reward: float | None  # aggregated score of the path
    tokens: int
    is_leaf: bool
    answer: str | None
    requested_at: float
    generated_at: float | None
    scored_at: float | None
    promoted_at: float | None  # when a speculative node joined the main path

    def to_json(self) -> dict[str, Any]:
        return {"type": "node", **asdict(self)}


@dataclass(frozen=True)
class TraceRequest:
    """An engine request, as the trace records it."""

    query_id: str
    request_id: str
    node_id: str
    kind: str  # "generate" | "reward"
    priority: str  # "main" | "speculative" (at enqueue)
    enqueued_at: float
    started_at: float | None
    ended_at: float | None
    end: str  # "done" | "aborted" | "failed"
    promoted: bool  # a speculative request whose result the search used
    tokens: int

    def to_json(self) -> dict[str, Any]:
        return {"type": "request", **asdict(self)}

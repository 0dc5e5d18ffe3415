"""What a run writes: one result row per query, and trace records of nodes and engine requests.

These are the stable, documented output formats (results JSONL: docs/python-api.md and the
README; trace JSONL: docs/traces.md); the field names are part of spex's interface. Fields added
after the first release have defaults, so rows and records written before them still load
(`QueryResult.from_json`, `runtime.trace_reader`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

# The trace format's version: 1 had no run header, no texts, no role scores and no sequence
# numbers; 2 adds them (docs/traces.md says what each field means).
TRACE_VERSION = 2


@dataclass(frozen=True)
class LeafAnswer:
    """One leaf the search kept: its answer, the score the vote weighs it by, and its class."""

    node_id: str
    answer: str | None  # None when the leaf's text has no answer
    reward: float | None  # aggregated reward of the answer's role (None: no reward role)
    answer_class: int | None  # classes numbered in the order found; None without an answer
    depth: int
    path_tokens: int


@dataclass(frozen=True)
class ClassTotal:
    """One equivalence class of the leaves' answers, with what the vote summed for it."""

    answer_class: int
    answer: str  # the class's representative: its first member in the order leaves were found
    weight: float | None  # sum of its leaves' rewards (None: the program has no reward role)
    count: int  # its leaves


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
    # -- where the row comes from (rows arrive in completion order; sort by these) --------
    dataset_line: int | None = None  # the dataset row's 1-based line (list position in the API)
    repeat: int = 0  # which of --repeat K runs of that row (0 = the first)
    program_hash: str | None = None  # sha256 of the compiled graph's canonical JSON
    params: Mapping[str, Any] = field(default_factory=dict)  # resolved parameter values
    # -- why this answer (runtime/explain.py) --------------------------------------------
    chosen_leaf: str | None = None  # the node id of the leaf whose path is chosen_path
    chosen_path: tuple[str, ...] = ()  # that leaf's steps' text, root's first child first
    candidates: tuple[LeafAnswer, ...] = ()  # every kept leaf, in the order found (explain.py)
    vote_totals: tuple[ClassTotal, ...] = ()  # per answer class, heaviest first
    preds: Mapping[str, str | None] = field(default_factory=dict)  # "pred_weighted@4": answer
    preds_correct: Mapping[str, bool | None] = field(default_factory=dict)  # same keys

    def to_json(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @staticmethod
    def from_json(row: object) -> QueryResult | None:
        """A row back from its JSON object; None when `row` is not one (a required field is
        missing or has a wrong shape). Rows from before a field existed get its default."""
        if not isinstance(row, dict) or not _REQUIRED_RESULT_FIELDS <= row.keys():
            return None
        values = {k: row[k] for k in _RESULT_FIELDS if k in row}
        try:
            for name, kind in (("candidates", LeafAnswer), ("vote_totals", ClassTotal)):
                if name in values:
                    values[name] = tuple(kind(**item) for item in values[name])
            if "chosen_path" in values:
                values["chosen_path"] = tuple(values["chosen_path"])
            return QueryResult(**values)
        except TypeError:
            return None


_RESULT_FIELDS = {f.name for f in fields(QueryResult)}
_REQUIRED_RESULT_FIELDS = {
    f.name for f in fields(QueryResult) if f.default is MISSING and f.default_factory is MISSING
}


@dataclass(frozen=True)
class TraceRun:
    """The header of one run in a trace: written when the executor starts the run."""

    trace_version: int
    spex_version: str
    strategy: str
    mode: str  # "sync" | "spec" | "spec+et"
    concurrency: int
    budget_cap: int  # the global cap M on in-flight policy requests (main + speculative)
    reserve: int  # batch slots the ledger keeps for the main paths of all queries
    delimiter: str  # the step delimiter: a path's text is the root's text + steps joined by it
    answer_role: str | None  # the reward role a node's `reward` field holds
    clock: str = "engine"  # every timestamp is on the engine's clock (virtual on the sim)
    seq: int = 0  # sequence number of the run's start

    def to_json(self) -> dict[str, Any]:
        return {"type": "run", **asdict(self)}


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
    # -- version 2 ------------------------------------------------------------------------
    text: str | None = None  # this node's step (the root: the rendered prompt)
    state: str | None = None  # "main" | "promoted" | "speculative" | "aborted" | "failed"
    rewards: Mapping[str, float] = field(default_factory=dict)  # aggregated, per reward role
    step_scores: Mapping[str, tuple[float, ...]] = field(default_factory=dict)  # per role
    answered: bool = False  # the step matched the answer pattern
    path_tokens: int = 0  # tokens of the path from the root to this node
    error: str | None = None  # why the node failed
    requested_seq: int | None = None  # sequence number of the node's creation
    promoted_seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": "node", **_plain(asdict(self))}


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
    # -- version 2 ------------------------------------------------------------------------
    role: str | None = None  # the reward role of a reward request; None for generate
    enqueued_seq: int | None = None  # sequence numbers of the executor's enqueue and end
    ended_seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"type": "request", **asdict(self)}


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """JSON's shapes: tuples become lists (so a row equals its own JSON read back)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return {k: plain(v) for k, v in row.items()}


class EventSequence:
    """Hands out increasing sequence numbers to a run's events: one instance per run, shared
    by its queries, so events with equal engine-clock timestamps are still totally ordered."""

    def __init__(self) -> None:
        self._next = 0

    def next(self) -> int:
        self._next += 1
        return self._next

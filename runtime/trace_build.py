"""Trace records from the executor's state: a search-tree node and an engine request log become
the `TraceNode` and `TraceRequest` that docs/traces.md documents.

Kept apart from the executor so that the trace's schema (owned with its reader,
runtime/trace_reader.py) changes in one place, whatever the executor's internals become: the
executor hands its nodes and request logs over and these functions read only their public
attributes (see the protocols below).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Protocol

from runtime.records import TraceNode, TraceRequest


class NodeView(Protocol):
    """What a trace node is made from: the executor's `Node` has these attributes."""

    node_id: str
    depth: int
    index: int
    created_speculative: bool
    kept: bool
    interrupted: bool
    tokens: int
    path_tokens: int
    is_leaf: bool
    answered: bool
    answer: str | None
    step: str
    text: str
    error: str | None
    rewards: dict[str, float]
    step_scores: dict[str, tuple[float, ...]]
    requested_at: float
    generated_at: float | None
    scored_at: float | None
    promoted_at: float | None

    @property
    def parent(self) -> NodeView | None: ...

    @property
    def status(self) -> Enum: ...  # the executor's NodeStatus; its value "failed" counts here


class RequestView(Protocol):
    """What a trace request is made from: the executor's `RequestLog`."""

    request_id: str
    kind: str
    speculative: bool
    enqueued_at: float
    started_at: float | None
    ended_at: float | None
    end: str
    tokens: int
    enqueued_seq: int | None
    ended_seq: int | None

    @property
    def node(self) -> NodeView: ...


def outcome(node: NodeView) -> str:
    """'kept' (in the tree), 'aborted' (dropped while running) or 'unused' (done, dropped)."""
    if node.kept:
        return "kept" if node.generated_at is not None else "aborted"
    return "aborted" if node.interrupted else "unused"


def state(node: NodeView) -> str:
    """main / promoted (speculative, then joined the search) / speculative (finished, never
    used: wasted) / aborted (dropped before it finished) / failed (the engine failed it)."""
    if node.status.value == "failed":
        return "failed"
    if not node.kept:
        return "aborted" if node.interrupted else "speculative"
    if node.generated_at is None and node.parent is not None:
        return "aborted"
    return "promoted" if node.created_speculative else "main"


def node_record(
    query_id: str,
    node: NodeView,
    *,
    answer_role: str | None,
    requested_seq: int | None = None,
    promoted_seq: int | None = None,
) -> TraceNode:
    parent = node.parent
    return TraceNode(
        query_id=query_id,
        node_id=node.node_id,
        parent_id=parent.node_id if parent is not None else None,
        depth=node.depth,
        child_index=node.index,
        created_as="speculative" if node.created_speculative else "main",
        outcome=outcome(node),
        reward=node.rewards.get(answer_role) if answer_role is not None else None,
        tokens=node.tokens,
        is_leaf=node.is_leaf,
        answer=node.answer,
        requested_at=node.requested_at,
        generated_at=node.generated_at,
        scored_at=node.scored_at,
        promoted_at=node.promoted_at,
        text=node.text if parent is None else node.step,
        state=state(node),
        rewards=dict(node.rewards),
        step_scores={role: tuple(s) for role, s in node.step_scores.items()},
        answered=node.answered,
        path_tokens=node.path_tokens,
        error=node.error,
        requested_seq=requested_seq,
        promoted_seq=promoted_seq,
    )


def request_record(query_id: str, log: RequestView) -> TraceRequest:
    node = log.node
    return TraceRequest(
        query_id=query_id,
        request_id=log.request_id,
        node_id=node.node_id,
        kind=log.kind,
        priority="speculative" if log.speculative else "main",
        enqueued_at=log.enqueued_at,
        started_at=log.started_at,
        ended_at=log.ended_at,
        end=log.end,
        promoted=log.speculative and node.kept and log.end == "done",
        tokens=log.tokens,
        role=reward_role_of(log.request_id) if log.kind == "reward" else None,
        enqueued_seq=log.enqueued_seq,
        ended_seq=log.ended_seq,
    )


def reward_role_of(request_id: str) -> str | None:
    """The role in a reward request id `<node>:r:<role>[~attempt]`."""
    _, sep, rest = request_id.rpartition(":r:")
    return rest.split("~", 1)[0] if sep else None


def emit(
    sink: _Sink,
    query_id: str,
    nodes: Sequence[NodeView],
    logs: Sequence[RequestView],
    *,
    answer_role: str | None,
    promoted_seq: Mapping[str, int],
) -> None:
    """Send one query's nodes, then its requests, to `sink` (its creation seq is the enqueue
    of its first generate request)."""
    created: dict[str, int] = {}
    for log in logs:
        if log.kind == "generate" and log.enqueued_seq is not None:
            created.setdefault(log.node.node_id, log.enqueued_seq)
    for node in nodes:
        sink.node(
            node_record(
                query_id,
                node,
                answer_role=answer_role,
                requested_seq=created.get(node.node_id),
                promoted_seq=promoted_seq.get(node.node_id),
            )
        )
    for log in logs:
        sink.request(request_record(query_id, log))


class _Sink(Protocol):
    def node(self, record: TraceNode) -> None: ...

    def request(self, record: TraceRequest) -> None: ...

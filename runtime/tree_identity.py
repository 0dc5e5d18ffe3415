"""Whether two runs built the same kept trees, query by query (what exact speculation promises).

A query's kept tree is the set of its nodes the search kept (trace outcome "kept": every node
of a sync run's tree, the main and promoted nodes of a speculative one), each identified by its
deterministic node id and compared by its step text, token count, leaf flag and answer. Two
runs built the same tree for a query when those sets are equal. Only a digest of each node is
held, so a bench over many queries stays small in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from runtime.records import TraceNode, TraceRequest


def node_digest(node: TraceNode) -> str:
    """What two runs' copies of a kept node must share, hashed."""
    text = node.text if node.text is not None else ""
    key = f"{node.node_id}\x00{node.tokens}\x00{node.is_leaf}\x00{node.answer}\x00{text}"
    return hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


class KeptTrees:
    """A trace sink that keeps, per query, the digests of its kept nodes."""

    def __init__(self) -> None:
        self.trees: dict[str, set[str]] = {}

    def run(self, record: object) -> None:
        """The run header carries no node."""

    def node(self, record: TraceNode) -> None:
        if record.outcome == "kept":
            self.trees.setdefault(record.query_id, set()).add(node_digest(record))

    def request(self, record: TraceRequest) -> None:
        """Requests do not change which nodes were kept."""


@dataclass(frozen=True)
class TreeMatch:
    """Queries, present in both runs, whose kept trees are identical."""

    identical: int
    compared: int
    differing: tuple[str, ...]  # query ids whose trees differ (first few, for a message)


def compare_trees(
    baseline: Mapping[str, set[str]], other: Mapping[str, set[str]], *, keep: int = 5
) -> TreeMatch:
    shared = sorted(set(baseline) & set(other))
    differing = [q for q in shared if baseline[q] != other[q]]
    return TreeMatch(len(shared) - len(differing), len(shared), tuple(differing[:keep]))

"""A query's search tree: nodes with deterministic identities, seeds and texts.

A node is named by its path of child indices (`q17/0.3.1`; the root is `q17/`), and its generate
seed is a hash of the query's seed and that path. So the same node gets the same request in a
synchronous and in a speculative run, which is what lets speculation be exact: a speculative
node that the real search later needs is the node the synchronous search would have made.

Nodes are plain slotted objects (the executor makes hundreds of thousands); a node's full text is
its parent's text plus its step and the delimiter, and its steps are read by walking up.
"""

from __future__ import annotations

from enum import Enum
from hashlib import blake2b


class NodeStatus(Enum):
    """Where a node is in its life."""

    PENDING = "pending"  # its generate request is queued or running
    GENERATED = "generated"  # its step is known; reward requests in flight
    SCORED = "scored"  # rewards known, leaf test and answer done
    ABORTED = "aborted"  # discarded before it finished (speculation dropped, query stopped)
    FAILED = "failed"  # the engine failed one of its requests


LIVE = (NodeStatus.PENDING, NodeStatus.GENERATED, NodeStatus.SCORED)


def node_seed(query_seed: int, path: tuple[int, ...]) -> int:
    """A 32-bit generate seed from the query's seed and the node's path (stable across runs)."""
    key = f"{query_seed}:{'.'.join(map(str, path))}".encode()
    return int.from_bytes(blake2b(key, digest_size=4).digest(), "little")


class Node:
    """One search-tree node: its identity, text, rewards, leaf status and bookkeeping."""

    __slots__ = (
        "answer",
        "answered",
        "attempt",
        "cancelled",
        "children",
        "created_speculative",
        "depth",
        "eos",
        "error",
        "expanded",
        "finished",
        "generated_at",
        "index",
        "inflight",
        "interrupted",
        "is_leaf",
        "kept",
        "node_id",
        "parent",
        "path",
        "path_tokens",
        "promoted_at",
        "requested_at",
        "rewards",
        "scored_at",
        "seed",
        "slot",
        "speculative",
        "status",
        "step",
        "step_scores",
        "tested",
        "text",
        "tokens",
        "value_sum",
        "visits",
    )

    def __init__(
        self,
        query_id: str,
        query_seed: int,
        parent: Node | None,
        index: int,
        *,
        speculative: bool,
        now: float,
    ) -> None:
        self.parent = parent
        self.index = index
        self.path: tuple[int, ...] = (*parent.path, index) if parent is not None else ()
        self.depth = len(self.path)
        if parent is None:
            self.node_id = f"{query_id}/"
        elif parent.parent is None:
            self.node_id = f"{parent.node_id}{index}"
        else:
            self.node_id = f"{parent.node_id}.{index}"
        self.seed = node_seed(query_seed, self.path)
        self.speculative = speculative
        self.created_speculative = speculative
        self.kept = not speculative
        self.cancelled = False
        self.status = NodeStatus.PENDING
        self.attempt = 0
        self.children: dict[int, Node] = {}
        self.expanded = False  # the main search expanded it (its children are in the tree)
        self.step = ""
        self.text = ""
        self.tokens = 0
        self.path_tokens = 0
        self.answered = False
        self.is_leaf = False
        self.eos = False  # the step ended with the model's end of sequence: a finished leaf
        self.tested = False  # the leaf test has run (is_leaf is final)
        self.answer: str | None = None
        self.rewards: dict[str, float] = {}
        self.step_scores: dict[str, tuple[float, ...]] = {}
        self.error: str | None = None
        self.requested_at = now
        self.generated_at: float | None = None
        self.scored_at: float | None = None
        self.promoted_at: float | None = None
        self.inflight: list[str] = []  # request ids of this node still running
        self.interrupted = False  # one of its requests was aborted while running
        self.slot: bool = False  # holds a policy-request slot in the budget ledger
        self.finished = False  # its task has ended (scored, failed or aborted)
        self.visits = 0
        self.value_sum = 0.0

    @staticmethod
    def root(query_id: str, query_seed: int, text: str, now: float) -> Node:
        """The tree's root: the rendered prompt, already 'scored' (nothing to generate)."""
        node = Node(query_id, query_seed, None, 0, speculative=False, now=now)
        node.text = text
        node.status = NodeStatus.SCORED
        node.tested = True
        node.generated_at = now
        node.scored_at = now
        return node

    @property
    def live(self) -> bool:
        return self.status in LIVE and not self.cancelled

    def done(self) -> bool:
        """Scored, failed or aborted: nothing more will happen to this node."""
        return self.finished

    @property
    def generated(self) -> bool:
        return self.status is NodeStatus.GENERATED or self.status is NodeStatus.SCORED

    @property
    def scored(self) -> bool:
        return self.status is NodeStatus.SCORED

    def steps(self) -> tuple[str, ...]:
        """The path's steps from the root's first child to this node."""
        out: list[str] = []
        node: Node | None = self
        while node is not None and node.parent is not None:
            out.append(node.step)
            node = node.parent
        out.reverse()
        return tuple(out)

    def reward(self, role: str | None) -> float:
        """The aggregated score for `role` (0 for the root or a node not scored by it)."""
        if role is None:
            return 0.0
        return self.rewards.get(role, 0.0)

    def request_id(self, kind: str) -> str:
        """A unique engine request id; a re-request after an abort gets a new attempt number."""
        suffix = f"~{self.attempt}" if self.attempt else ""
        return f"{self.node_id}:{kind}{suffix}"

    def live_children(self) -> list[Node]:
        return [c for c in self.children.values() if c.live]

    def __repr__(self) -> str:
        return f"Node({self.node_id}, {self.status.value}{', spec' if self.speculative else ''})"

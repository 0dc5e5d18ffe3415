"""The graph IR: typed ops and edges held in a networkx DiGraph.

One compiled strategy is one graph. Its ops come from the fixed set `OpKind`; each carries a
frozen attribute record of the type `ATTRS_FOR[kind]`, which holds everything the runtime needs
to execute that op (sampling parameters, the selection rule, the leaf and stop conditions, the
answer aggregation), so execution never looks back at the source program.

Edges point from producer to consumer. `EdgeKind.REWARD` edges mark a consumer that reads reward
values: each is `speculative`, the place where the runtime may run ahead before the reward
arrives. `EdgeKind.LOOP` is the back edge that closes a search region; the graph without LOOP
edges is a DAG.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

import networkx as nx

from compiler.expr import Expr

IR_VERSION = 1


class OpKind(Enum):
    """The op set. Every node of a strategy graph is one of these."""

    INPUT = "input"  # the query's question, read from a dataset row
    PROMPT = "prompt"  # renders the prompt template: the search tree's root text
    SEARCH = "search"  # loop head of the search region: holds the frontier of each iteration
    GENERATE = "generate"  # one policy call per child: extends a path by one step
    REWARD = "reward"  # scores a new node's path with a reward model
    LEAF_TEST = "leaf_test"  # decides which new nodes are finished (leaves)
    SELECT = "select"  # picks which nodes expand next, and with how many children
    BACKUP = "backup"  # rollout search: carries a leaf's value up to its ancestors
    STOP_TEST = "stop_test"  # decides when the search loop ends
    ANSWER = "answer"  # aggregates the leaves into the query's answer


class EdgeKind(Enum):
    """What flows along an edge."""

    DATA = "data"  # nodes (texts, tokens) flow from producer to consumer
    REWARD = "reward"  # the consumer reads reward values: a reward barrier, speculative
    LOOP = "loop"  # back edge into the search head: the next iteration's frontier


class SearchKind(Enum):
    """The shape of the search loop."""

    LAYERED = "layered"  # breadth-first by layers: beam, DVTS, REBASE, ETS, ToT-BFS, best-of-N
    ROLLOUT = "rollout"  # repeated root-to-leaf descents with backup: MCTS
    DEPTH_FIRST = "depth_first"  # follow the best child, backtrack on low value: ToT-DFS


class SelectRule(Enum):
    """How SELECT chooses the nodes to expand."""

    EACH = "each"  # every frontier node gets `children` children; reads no reward
    TOP = "top"  # the `k` best frontier nodes by reward get `children` each
    SOFTMAX_ALLOCATE = "softmax_allocate"  # REBASE: budget split by softmax(reward / temperature)
    ETS_ALLOCATE = "ets_allocate"  # ETS: softmax allocation less a cost per kept node
    UCT = "uct"  # rollout descent by Q/N + c*sqrt(ln N_parent / N), unvisited first
    BEST_FIRST = "best_first"  # depth-first: children in descending reward, pruned below a bound


class SelectScope(Enum):
    """Where a selection rule is applied."""

    LAYER = "layer"  # once over the whole frontier
    SUBTREE = "subtree"  # separately inside each subtree under a root child (DVTS)


class Aggregate(Enum):
    """How a PRM's per-step scores become one score for a path."""

    LAST = "last"
    MIN = "min"
    PROD = "prod"
    MEAN = "mean"


class AnswerMethod(Enum):
    """How the leaves become one answer."""

    VOTE = "vote"  # weighted majority over equivalence classes of extracted answers
    BEST = "best"  # the answer of the single best leaf by reward
    MAJORITY = "majority"  # unweighted majority vote


class Equivalence(Enum):
    """When two extracted answers count as the same."""

    EXACT = "exact"  # identical strings after stripping whitespace
    NUMERIC = "numeric"  # equal as numbers (commas, $ and % ignored)
    MATH = "math"  # equal as mathematics (math-verify: LaTeX, fractions, tuples)


class RoleKind(Enum):
    """What a declared model does."""

    GENERATE = "generate"
    REWARD = "reward"


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of one generate role, per step."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 256  # per step
    stop: tuple[str, ...] = ()  # the step delimiter first, then any extra stops


@dataclass(frozen=True)
class Role:
    """A model declared by role in the program; which engine serves it is chosen at run time."""

    name: str
    kind: RoleKind
    sampling: Sampling | None = None  # generate roles
    aggregate: Aggregate | None = None  # reward roles


@dataclass(frozen=True)
class Param:
    """A strategy parameter with its resolved value (default or `-p` override)."""

    name: str
    type: str  # "int" | "float" | "bool" | "str"
    value: int | float | bool | str


@dataclass(frozen=True)
class InputAttrs:
    field: str = "question"


@dataclass(frozen=True)
class PromptAttrs:
    template: str  # with `{question}`
    step_delimiter: str  # joins a path's steps; also the generate roles' first stop string


@dataclass(frozen=True)
class SearchAttrs:
    kind: SearchKind
    root_children: Expr | None = None  # children of the root before the rule applies


@dataclass(frozen=True)
class GenerateAttrs:
    role: str
    sampling: Sampling


@dataclass(frozen=True)
class RewardAttrs:
    role: str
    aggregate: Aggregate


@dataclass(frozen=True)
class LeafAttrs:
    condition: Expr  # reads depth, tokens, answered and reward roles of one node


@dataclass(frozen=True)
class SelectAttrs:
    rule: SelectRule
    scope: SelectScope = SelectScope.LAYER
    reward_role: str | None = None  # the reward the rule reads (None for EACH)
    children: Expr | None = None  # EACH, TOP, UCT, BEST_FIRST: children per expanded node
    k: Expr | None = None  # TOP: how many nodes to keep
    temperature: Expr | None = None  # SOFTMAX_ALLOCATE, ETS_ALLOCATE
    budget: Expr | None = None  # SOFTMAX_ALLOCATE, ETS_ALLOCATE: children in the whole layer
    keep_cost: Expr | None = None  # ETS_ALLOCATE: cost of keeping one more node (KV)
    exploration: Expr | None = None  # UCT: c
    prune_below: Expr | None = None  # BEST_FIRST: children with a lower reward are skipped


@dataclass(frozen=True)
class BackupAttrs:
    reward_role: str
    source: str = "leaf"  # "leaf": the leaf's aggregated score; "mean": mean step score on path


@dataclass(frozen=True)
class StopAttrs:
    condition: Expr  # reads count(...) and depth (the layer index) only


@dataclass(frozen=True)
class AnswerAttrs:
    method: AnswerMethod
    pattern: str  # answer extraction regex; group 1 (or the match) is the answer
    equivalence: Equivalence
    reward_role: str | None = None  # the weight (VOTE) or key (BEST); None for MAJORITY


OpAttrs = (
    InputAttrs
    | PromptAttrs
    | SearchAttrs
    | GenerateAttrs
    | RewardAttrs
    | LeafAttrs
    | SelectAttrs
    | BackupAttrs
    | StopAttrs
    | AnswerAttrs
)

ATTRS_FOR: dict[OpKind, type] = {
    OpKind.INPUT: InputAttrs,
    OpKind.PROMPT: PromptAttrs,
    OpKind.SEARCH: SearchAttrs,
    OpKind.GENERATE: GenerateAttrs,
    OpKind.REWARD: RewardAttrs,
    OpKind.LEAF_TEST: LeafAttrs,
    OpKind.SELECT: SelectAttrs,
    OpKind.BACKUP: BackupAttrs,
    OpKind.STOP_TEST: StopAttrs,
    OpKind.ANSWER: AnswerAttrs,
}


@dataclass(frozen=True)
class Op:
    """One node of the graph: a unique name, its kind and its attributes."""

    name: str
    kind: OpKind
    attrs: OpAttrs


@dataclass(frozen=True)
class Edge:
    src: str
    dst: str
    kind: EdgeKind

    @property
    def speculative(self) -> bool:
        """Reward-dependency edges are where the runtime may speculate."""
        return self.kind is EdgeKind.REWARD


@dataclass
class StrategyGraph:
    """A compiled strategy: metadata plus the op graph (networkx holds ops under key "op")."""

    strategy: str
    params: tuple[Param, ...]
    roles: tuple[Role, ...]
    graph: nx.DiGraph = field(default_factory=nx.DiGraph)

    def add_op(self, op: Op) -> Op:
        if op.name in self.graph:
            raise ValueError(f"duplicate op name %{op.name}")
        self.graph.add_node(op.name, op=op)
        return op

    def add_edge(self, src: Op | str, dst: Op | str, kind: EdgeKind = EdgeKind.DATA) -> None:
        s = src if isinstance(src, str) else src.name
        d = dst if isinstance(dst, str) else dst.name
        self.graph.add_edge(s, d, kind=kind, speculative=kind is EdgeKind.REWARD)

    def op(self, name: str) -> Op:
        result: Op = self.graph.nodes[name]["op"]
        return result

    def ops(self) -> Iterator[Op]:
        """Ops in a stable topological order (LOOP edges ignored, ties by insertion)."""
        order = {n: i for i, n in enumerate(self.graph.nodes)}
        dag = nx.DiGraph()
        dag.add_nodes_from(self.graph.nodes)
        dag.add_edges_from(
            (u, v) for u, v, k in self.graph.edges(data="kind") if k is not EdgeKind.LOOP
        )
        for name in nx.lexicographical_topological_sort(dag, key=lambda n: order[n]):
            yield self.op(name)

    def ops_of(self, kind: OpKind) -> list[Op]:
        return [op for op in self.ops() if op.kind is kind]

    def only(self, kind: OpKind) -> Op:
        """The single op of `kind`; raises if there is not exactly one."""
        found = self.ops_of(kind)
        if len(found) != 1:
            raise ValueError(f"expected one {kind.value} op, found {len(found)}")
        return found[0]

    def edges(self) -> list[Edge]:
        return [Edge(u, v, k) for u, v, k in self.graph.edges(data="kind")]

    def inputs(self, name: str) -> list[Edge]:
        return [Edge(u, name, k) for u, _, k in self.graph.in_edges(name, data="kind")]

    def role(self, name: str) -> Role:
        for r in self.roles:
            if r.name == name:
                return r
        raise KeyError(name)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

"""The graph IR: typed ops and edges held in a networkx DiGraph.

One compiled strategy is one graph. Its ops come from the fixed set `OpKind`; each carries a
frozen attribute record of the type `ATTRS_FOR[kind]`, which holds everything the runtime needs
to execute that op (sampling parameters, the selection rule, the leaf and stop conditions, the
answer aggregation), so execution never looks back at the source program.

Edges point from producer to consumer. `EdgeKind.REWARD` edges mark a consumer that reads reward
values: each is `speculative`, the place where the runtime may run ahead before the reward
arrives. `EdgeKind.LOOP` is the back edge that closes a search region; the graph without LOOP
edges is a DAG.

Selection rules are not hard-wired here: a SELECT op names its rule (an entry of the registry in
compiler/rules.py) and carries the rule's arguments by name. A selection written as a pipeline
(`top(8, by = prm) then allocate(...)`) lowers to a chain of SELECT ops, one per stage.

Every op carries the source span it was compiled from, and every expression in its attributes its
own span, and the graph carries the program's source, so a run-time failure is reported like a
compile error (file:line:col, the line, a caret).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum, StrEnum

import networkx as nx

from compiler.expr import Expr
from spexlang.diagnostics import Diagnostic, Severity, Source, Span

IR_VERSION = 2  # 2: rule arguments by name, SELECT chains, spans and source, lookahead, judges


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
    LOOKAHEAD = "lookahead"  # scores each new node by the reward of a k-step continuation
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
    BEST_FIRST = "best_first"  # each iteration selects from every open node of the tree


class SelectRule(StrEnum):
    """Names of the shipped selection rules (compiler/rules.py holds every rule's definition).

    `SelectAttrs.rule` is a plain string naming a registry entry, so a new rule needs no member
    here; lowering stores these members (StrEnum: they are strings) for the shipped rules, so
    code that compares with `is SelectRule.TOP` keeps working.
    """

    EACH = "each"  # every candidate gets `children` children; reads no reward
    TOP = "top"  # keeps the `k` best candidates by the `by` value
    WHERE = "where"  # keeps the candidates whose `condition` holds (a reward threshold, ...)
    SOFTMAX_ALLOCATE = "softmax_allocate"  # REBASE: budget split by softmax(score / temperature)
    ETS_ALLOCATE = "ets_allocate"  # ETS: softmax allocation less a cost per kept node
    UCT = "uct"  # rollout descent by Q/N + c*sqrt(ln N_parent / N), unvisited first
    ORDERED = "ordered"  # depth-first: children in descending score, pruned below a bound
    BEST_FIRST = "ordered"  # the old name of ORDERED (an alias), kept for existing callers


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


class VerdictRead(Enum):
    """How a judge (a reward role served by a generate role) turns its output into a score."""

    LOGPROBS = "logprobs"  # expected score under the next-token distribution over the verdicts
    TEXT = "text"  # generate text, the last verdict word in it gives the score (mean of samples)


@dataclass(frozen=True)
class Sampling:
    """Sampling parameters of one generate role, per step."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 256  # per step
    stop: tuple[str, ...] = ()  # the step delimiter first, then any extra stops


@dataclass(frozen=True)
class Verdict:
    """One verdict word a judge may answer, and the score it stands for."""

    word: str  # matched case-insensitively, as a whole word (text) or as the first token (logprobs)
    score: float


@dataclass(frozen=True)
class Judge:
    """A reward role computed by prompting a generate role (ToT's "sure / likely / impossible")."""

    generator: str  # the generate role that serves this reward role (its engine answers)
    prompt: str  # template: `{path}` is the node's path text, `{question}` the query's question
    read: VerdictRead  # from log-probabilities of the verdict words, or parsed from text
    verdicts: tuple[Verdict, ...]  # the words and their scores, as declared
    samples: int = 1  # TEXT: generations averaged; LOGPROBS: always 1
    max_tokens: int = 8  # TEXT: tokens generated for one verdict


@dataclass(frozen=True)
class Role:
    """A model declared by role in the program; which engine serves it is chosen at run time."""

    name: str
    kind: RoleKind
    sampling: Sampling | None = None  # generate roles
    aggregate: Aggregate | None = None  # reward roles
    judge: Judge | None = None  # reward roles served by a generate role with a declared prompt


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
    judge: Judge | None = None  # the role's judge, when a generate role serves it by a prompt


@dataclass(frozen=True)
class LookaheadAttrs:
    """Snell et al.'s lookahead: a new node's value is the reward at the end of a continuation of
    `steps` more steps by `policy` (stopping early at a leaf); the continuation is not kept."""

    name: str  # the value's name, as the program reads it (`by = look`)
    policy: str  # the generate role that continues the path
    sampling: Sampling  # that role's sampling (temperature 0: greedy)
    reward_role: str  # the reward role that scores the continuation's last step
    steps: Expr  # steps of continuation (a constant >= 0; 0 scores the node itself)


@dataclass(frozen=True)
class LeafAttrs:
    # Reads depth, tokens, answered, eos and value roles of one node. A node whose step ended
    # with the model's end-of-sequence is a leaf whatever the condition says.
    condition: Expr


@dataclass(frozen=True)
class RuleArgument:
    """One argument of a selection rule, by the name compiler/rules.py gives it."""

    name: str
    value: Expr  # a number, a condition, or a value role read as `Ref(role)`


@dataclass(frozen=True)
class SelectAttrs:
    """One selection stage. A chain of stages runs in order, each on the nodes the previous kept;
    the last one (the op named `select`, with the LOOP edge) also says how many children each
    kept node gets: `children` each, or the rule allocates them itself (`children` is None)."""

    # The name of a compiler/rules.py entry: a SelectRule member for the shipped rules, a plain
    # string for others (the JSON loader restores the member from the first union arm it fits).
    rule: SelectRule | str
    scope: SelectScope = SelectScope.LAYER
    reward_role: str | None = None  # the value role the rule ranks by (None if it ranks by none)
    children: Expr | None = None  # last stage of a non-allocating rule: children per kept node
    args: tuple[RuleArgument, ...] = ()  # every argument the registry declares, defaults filled
    stage: int = 0  # position in the chain, 0 first
    last: bool = True  # the chain's last stage: it assigns children and closes the loop

    def arg(self, name: str) -> Expr | None:
        """The argument called `name`, or None when the rule has no such (optional) argument."""
        for a in self.args:
            if a.name == name:
                return a.value
        return None

    # The arguments of the shipped rules under their old attribute names, for existing callers.
    @property
    def k(self) -> Expr | None:
        return self.arg("k")

    @property
    def temperature(self) -> Expr | None:
        return self.arg("temperature")

    @property
    def budget(self) -> Expr | None:
        return self.arg("budget")

    @property
    def keep_cost(self) -> Expr | None:
        return self.arg("keep_cost")

    @property
    def exploration(self) -> Expr | None:
        return self.arg("exploration")

    @property
    def prune_below(self) -> Expr | None:
        return self.arg("prune_below")


@dataclass(frozen=True)
class BackupAttrs:
    reward_role: str
    source: str = "leaf"  # "leaf": the leaf's aggregated score; "mean": mean step score on path


@dataclass(frozen=True)
class StopAttrs:
    # Reads count(...) (count(answers): distinct answers among the leaves), share(leader) (the
    # leading answer's share of the answered leaves, optionally reward-weighted) and depth.
    condition: Expr


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
    | LookaheadAttrs
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
    OpKind.LOOKAHEAD: LookaheadAttrs,
    OpKind.STOP_TEST: StopAttrs,
    OpKind.ANSWER: AnswerAttrs,
}


@dataclass(frozen=True)
class Op:
    """One node of the graph: a unique name, its kind and its attributes, and where in the
    program it came from (`span`), with the span of each expression in its attributes by key
    (an attribute name, or a rule argument's name)."""

    name: str
    kind: OpKind
    attrs: OpAttrs
    span: Span | None = None
    expr_spans: tuple[tuple[str, Span], ...] = ()

    def span_of(self, key: str | None = None) -> Span | None:
        """The span of the expression under `key` (e.g. "children", "budget", "condition"),
        falling back to the op's own span."""
        for k, s in self.expr_spans:
            if k == key:
                return s
        return self.span


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
    source: Source | None = None  # the program's file name and text, for located run-time errors

    def diagnostic(self, op: str, key: str | None, message: str) -> Diagnostic:
        """A run-time error located at op `op`'s expression `key`, rendered like a compile error
        by `.render()`: `file:line:col: error: message`, the source line and a caret."""
        span = self.op(op).span_of(key) if op in self.graph else None
        return Diagnostic(Severity.ERROR, message, span, self.source)

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

"""The registry of selection rules: everything the compiler knows about each rule, in one entry.

The checker (how a rule is written, its arguments and their types), lowering (defaults and the
values an argument must have), lint (the invariants of a SELECT op) and bounds (how many nodes a
rule keeps or children it hands out) all read `RULES`; none of them has a code path per rule.
Adding a rule is one `Rule(...)` entry here plus its run-time entry in the executor.

A selection is a pipeline of stages (`top(8, by = prm) then where(prm > 0.2) then allocate(...)`):
every stage keeps some of its candidates, in an order; the last stage then gives each kept node
`children` children, or, for a rule that allocates, splits its budget over them itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from compiler.ir import SearchKind, SelectRule


class ArgType(Enum):
    """What a rule argument is, which decides how it is checked and lowered."""

    INT = "int"  # a whole-number expression, evaluated when the rule runs (depth, count(...))
    FLOAT = "float"  # a number expression, evaluated when the rule runs
    VALUE = "value"  # the name of a value role (a reward role or a lookahead): the rule reads it
    CONDITION = "condition"  # a condition on one node (depth, tokens, answered, eos, values)


class Written(Enum):
    """Where an argument is written in the rule's spelling."""

    POSITIONAL = "positional"  # `top(K, ...)`: by position, in declaration order
    KEYWORD = "keyword"  # `top(..., by = R)`; for an allocation, an argument of `allocate(...)`
    SCORE = "score"  # allocation: the `R` of `allocate(NAME(R / T), ...)`
    DIVISOR = "divisor"  # allocation: the `T` of `R / T` (its default when written `NAME(R)`)
    INNER = "inner"  # allocation: a named argument of the inner `NAME(R / T, key = ...)`


class Spelling(Enum):
    """How a rule is written in a program."""

    CALL = "call"  # `top(4, by = prm)`: a call of the rule's name
    WORD = "word"  # `frontier`: a bare word, no arguments
    ALLOCATE = "allocate"  # `allocate(softmax(prm / tau), budget = B)`
    CLAUSE = "clause"  # built from search clauses (`order by R` + `prune when R < B`)


@dataclass(frozen=True)
class Arg:
    """One argument of a rule."""

    name: str  # the IR name (`SelectAttrs.arg(name)`) and, for keywords, the written name
    type: ArgType
    written: Written
    doc: str  # for messages: what the argument is (`budget`, `K of top`)
    shown: str  # its placeholder where messages show how the rule is written (`K`, `R`)
    required: bool = True
    default: int | float | None = None  # filled in when not written (only if not required)
    minimum: float | None = None  # numeric: the least value it may take while the search runs
    strict: bool = False  # the value must be greater than `minimum`, not equal to it
    start_minimum: float | None = None  # the least value it may have when the search starts


# Bounds: given an upper bound on the candidates (None: unknown) and the upper bounds of the
# rule's numeric arguments (None: unbounded), the most nodes a stage keeps.
Keeps = Callable[[int | None, Mapping[str, int | None], int], int | None]
# For an allocating rule: the most children it hands out in one iteration.
Allocates = Callable[[Mapping[str, int | None]], int | None]


def _keeps_all(candidates: int | None, args: Mapping[str, int | None], subtrees: int) -> int | None:
    return candidates


def _keeps_k(candidates: int | None, args: Mapping[str, int | None], subtrees: int) -> int | None:
    k = args.get("k")
    if k is None:
        return candidates
    k *= subtrees  # per subtree, each subtree keeps its own k
    return k if candidates is None else min(k, candidates)


def _allocates_budget(args: Mapping[str, int | None]) -> int | None:
    return args.get("budget")


@dataclass(frozen=True)
class Rule:
    """A selection rule: how it is written, its arguments, where it may be used, its bounds."""

    name: str  # the IR name (`select[NAME]`)
    spelling: Spelling
    written: str  # the word a program writes: `top`, `frontier`, `softmax` (inside allocate)
    args: tuple[Arg, ...]
    searches: frozenset[SearchKind]  # the search kinds that may use it
    summary: str  # one line for docs and messages
    keeps: Keeps = _keeps_all
    allocates: Allocates | None = None  # set for rules that decide the children themselves
    per_subtree: bool = False  # may run separately inside each subtree (`... per subtree`)
    chains: bool = True  # may be a stage of a pipeline (False: the selection is this rule alone)

    def arg(self, name: str) -> Arg | None:
        return next((a for a in self.args if a.name == name), None)

    def values_read(self) -> tuple[Arg, ...]:
        """The arguments through which the rule reads value roles (its reward dependencies)."""
        return tuple(a for a in self.args if a.type in (ArgType.VALUE, ArgType.CONDITION))


_LAYERED_LIKE = frozenset({SearchKind.LAYERED, SearchKind.BEST_FIRST})
_BY = Arg("by", ArgType.VALUE, Written.KEYWORD, "by", "R")
_SCORE = Arg("score", ArgType.VALUE, Written.SCORE, "score", "R")
_TEMPERATURE = Arg(
    "temperature",
    ArgType.FLOAT,
    Written.DIVISOR,
    "temperature",
    "T",
    required=False,
    default=1,
    minimum=0,
    strict=True,
)
_BUDGET = Arg(
    "budget",
    ArgType.INT,
    Written.KEYWORD,
    "budget",
    "B",
    minimum=0,
    start_minimum=1,
)

RULES: Mapping[str, Rule] = {
    r.name: r
    for r in (
        Rule(
            SelectRule.EACH,
            Spelling.WORD,
            "frontier",
            (),
            frozenset({SearchKind.LAYERED}),
            "every candidate (the whole frontier)",
            chains=False,
        ),
        Rule(
            SelectRule.TOP,
            Spelling.CALL,
            "top",
            (
                Arg(
                    "k",
                    ArgType.INT,
                    Written.POSITIONAL,
                    "K of top",
                    "K",
                    minimum=1,
                ),
                _BY,
            ),
            _LAYERED_LIKE,
            "the K best candidates by a value",
            keeps=_keeps_k,
            per_subtree=True,
        ),
        Rule(
            SelectRule.WHERE,
            Spelling.CALL,
            "where",
            (Arg("condition", ArgType.CONDITION, Written.POSITIONAL, "where", "CONDITION"),),
            _LAYERED_LIKE,
            "the candidates for which a condition holds (e.g. a reward threshold)",
            per_subtree=True,
        ),
        Rule(
            SelectRule.SOFTMAX_ALLOCATE,
            Spelling.ALLOCATE,
            "softmax",
            (_SCORE, _TEMPERATURE, _BUDGET),
            _LAYERED_LIKE,
            "REBASE: the budget split over the candidates by softmax(value / T)",
            allocates=_allocates_budget,
        ),
        Rule(
            SelectRule.ETS_ALLOCATE,
            Spelling.ALLOCATE,
            "ets",
            (
                _SCORE,
                _TEMPERATURE,
                Arg(
                    "keep_cost",
                    ArgType.FLOAT,
                    Written.INNER,
                    "keep_cost",
                    "C",
                    required=False,  # absent: the paper's 1/(M+N) per node (selection.py)
                    minimum=0,
                ),
                _BUDGET,
            ),
            _LAYERED_LIKE,
            "ETS: softmax allocation less a cost per kept node",
            allocates=_allocates_budget,
        ),
        Rule(
            "dvts",
            Spelling.CALL,
            "dvts",
            (
                _BY,
                Arg("samples", ArgType.INT, Written.KEYWORD, "samples", "M", minimum=1),
            ),
            frozenset({SearchKind.LAYERED}),
            "DVTS (search-and-learn): each subtree of M first steps keeps its best node, a"
            " finished best ends it",
            allocates=lambda args: None,  # M per live subtree: at most the layer it came from
            chains=False,
        ),
        Rule(
            "beam",
            Spelling.CALL,
            "beam",
            (
                Arg("k", ArgType.INT, Written.POSITIONAL, "K of beam", "K", minimum=1),
                _BY,
                Arg("generations", ArgType.INT, Written.KEYWORD, "generations", "N", minimum=1),
            ),
            frozenset({SearchKind.LAYERED}),
            "beam search (search-and-learn): the K best unfinished candidates share N generations",
            keeps=_keeps_k,
            allocates=lambda args: args.get("generations"),
            chains=False,
        ),
        Rule(
            SelectRule.UCT,
            Spelling.CALL,
            "uct",
            (
                Arg(
                    "exploration",
                    ArgType.FLOAT,
                    Written.POSITIONAL,
                    "exploration",
                    "C",
                    minimum=0,
                ),
                Arg("by", ArgType.VALUE, Written.KEYWORD, "by", "R", required=False),
            ),
            frozenset({SearchKind.ROLLOUT}),
            "descend by UCT on the backed-up values",
            chains=False,
        ),
        Rule(
            SelectRule.ORDERED,
            Spelling.CLAUSE,
            "order",
            (
                Arg("by", ArgType.VALUE, Written.KEYWORD, "order by", "R"),
                Arg(
                    "prune_below",
                    ArgType.FLOAT,
                    Written.KEYWORD,
                    "prune bound",
                    "BOUND",
                    required=False,
                ),
            ),
            frozenset({SearchKind.DEPTH_FIRST}),
            "children visited best first, those below a bound pruned",
            chains=False,
        ),
    )
}


def rule_written(spelling: Spelling, word: str) -> Rule | None:
    """The rule a program writes as `word` in `spelling` (`top`, `softmax` in allocate, ...)."""
    return next((r for r in RULES.values() if r.spelling is spelling and r.written == word), None)


def written_rules(spelling: Spelling) -> tuple[str, ...]:
    return tuple(r.written for r in RULES.values() if r.spelling is spelling)

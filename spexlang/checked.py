"""The checked program: what the checker hands to the compiler once a program has no errors.

Declarations are resolved (every name known, every role of the right kind, every expression
typed), defaults are values, and each rule's arguments are picked out by meaning. Expressions stay
syntax trees so the compiler can still point at them when a parameter value makes one invalid
(`-p m=0` in `n // m`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from spexlang import ast
from spexlang.diagnostics import Source

Value = int | float | bool | str


class ValueType(Enum):
    """The type of a parameter or an expression."""

    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STR = "str"

    @property
    def numeric(self) -> bool:
        return self in (ValueType.INT, ValueType.FLOAT)

    def describe(self) -> str:
        """How a message names the type: 'a number (int)', 'a condition (bool)'."""
        return {
            ValueType.INT: "a whole number (int)",
            ValueType.FLOAT: "a number (float)",
            ValueType.BOOL: "a condition (bool)",
            ValueType.STR: "a string (str)",
        }[self]


@dataclass(frozen=True)
class CheckedParam:
    name: str
    type: ValueType
    default: Value
    decl: ast.ParamDecl


@dataclass(frozen=True)
class CheckedJudge:
    """A reward role served by a generate role: `reward(judge = policy, prompt = ..., verdict =
    logprobs(sure = 1.0, ...))`."""

    generator: str
    prompt: str
    read: str  # logprobs | text
    verdicts: tuple[tuple[str, ast.Expression], ...]  # word -> its score (a constant)
    samples: ast.Expression | None
    max_tokens: ast.Expression | None
    node: ast.Node


@dataclass(frozen=True)
class CheckedLookahead:
    """`lookahead(prm, policy = greedy, steps = 2)`: a value from a k-step continuation."""

    reward_role: str
    policy: str
    steps: ast.Expression


@dataclass(frozen=True)
class CheckedModel:
    """A declared role. Generate roles carry their sampling options, reward roles an aggregate
    (and a judge when a generate role serves them), lookahead values what they continue with."""

    name: str
    kind: str  # "generate" | "reward" | "lookahead"
    decl: ast.ModelDecl
    options: Mapping[str, ast.Expression]  # temperature, top_p, top_k, max_tokens (generate)
    stop: tuple[str, ...] = ()
    aggregate: str | None = None  # last | min | prod | mean (reward)
    judge: CheckedJudge | None = None
    lookahead: CheckedLookahead | None = None


@dataclass(frozen=True)
class CheckedRule:
    """One selection stage; `rule` names a compiler/rules.py entry."""

    rule: str
    per_subtree: bool
    reward_role: str | None  # the value role the rule ranks by, if any
    arguments: Mapping[str, ast.Expression]  # by the registry's argument names, as written
    node: ast.Node


@dataclass(frozen=True)
class CheckedSearch:
    kind: str  # layered | best_first | rollout | depth_first
    decl: ast.SearchDecl
    role: str  # the generate role that expands nodes
    root_children: ast.Expression | None
    stages: tuple[CheckedRule, ...]  # the selection pipeline, first stage first
    children: ast.Expression | None  # children per kept node (None when the last stage allocates)
    leaf: ast.Expression
    until: ast.Expression
    backup: ast.BackupClause | None

    @property
    def rule(self) -> CheckedRule:
        """The last stage: the one that assigns children."""
        return self.stages[-1]


@dataclass(frozen=True)
class CheckedAnswer:
    method: str  # vote | best | majority
    reward_role: str | None
    decl: ast.ReturnDecl


@dataclass(frozen=True)
class CheckedProgram:
    source: Source
    program: ast.Program
    name: str
    params: tuple[CheckedParam, ...]
    prompt: str
    step: str
    answer_pattern: str
    equivalence: str
    models: tuple[CheckedModel, ...]
    search: CheckedSearch
    answer: CheckedAnswer

    def model(self, name: str) -> CheckedModel:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

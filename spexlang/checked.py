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
class CheckedModel:
    """A declared role. Generate roles carry their sampling options, reward roles an aggregate."""

    name: str
    kind: str  # "generate" | "reward"
    decl: ast.ModelDecl
    options: Mapping[str, ast.Expression]  # temperature, top_p, top_k, max_tokens (generate)
    stop: tuple[str, ...] = ()
    aggregate: str | None = None  # last | min | prod | mean (reward)


@dataclass(frozen=True)
class CheckedRule:
    """How the search picks what to expand; `rule` is an IR SelectRule value."""

    rule: str  # each | top | softmax_allocate | ets_allocate | uct | best_first
    per_subtree: bool
    reward_role: str | None
    arguments: Mapping[str, ast.Expression]  # children k temperature budget keep_cost ...
    node: ast.Node


@dataclass(frozen=True)
class CheckedSearch:
    kind: str  # layered | rollout | depth_first
    decl: ast.SearchDecl
    role: str  # the generate role that expands nodes
    root_children: ast.Expression | None
    rule: CheckedRule
    leaf: ast.Expression
    until: ast.Expression
    backup: ast.BackupClause | None


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

"""The syntax tree of a .spx program: frozen dataclasses, one per construct.

Every node carries the `span` of the source it came from; spans take no part in equality, so a
test can compare a parsed fragment with a hand-built node. The tree is exactly what was written:
names are not resolved and nothing is checked here (spexlang/checker.py does that).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spexlang.diagnostics import Span

NO_SPAN = Span(0, 0, 0, 0)


# ---------------------------------------------------------------------------------------------
# Names and expressions


@dataclass(frozen=True)
class Name:
    """An identifier as written, with its own span (for precise error locations)."""

    text: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class NumberLit:
    value: int | float
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class StringLit:
    value: str  # escapes already decoded
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class BoolLit:
    value: bool
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class ListLit:
    items: tuple[Expression, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Var:
    """A name read as a value: a parameter, a model role or a built-in like `depth`."""

    name: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class UnaryOp:
    op: str  # "not" | "-"
    operand: Expression
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class BinaryOp:
    op: str  # or and < <= > >= == != + - * / // %
    left: Expression
    right: Expression
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Argument:
    """One argument of a call: positional (`keyword` is None) or `keyword = value`."""

    keyword: Name | None
    value: Expression
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class CallExpr:
    """`f(a, k = b)`: a built-in function, `count(...)`, or a rule such as `top(...)`."""

    function: Name
    arguments: tuple[Argument, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Expression = NumberLit | StringLit | BoolLit | ListLit | Var | UnaryOp | BinaryOp | CallExpr


# ---------------------------------------------------------------------------------------------
# Search clauses


@dataclass(frozen=True)
class Selection:
    """What `expand` picks: one rule (`frontier`, `top(...)`, `allocate(...)`) or a pipeline of
    them joined by `then`, each stage choosing among what the previous one kept."""

    stages: tuple[Expression, ...]
    per_subtree: bool = False
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class StartClause:
    arguments: tuple[Argument, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class ExpandClause:
    selection: Selection | None
    role: Name
    arguments: tuple[Argument, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class LeafClause:
    condition: Expression
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class UntilClause:
    condition: Expression
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class SelectClause:
    rule: Expression
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class BackupClause:
    """`backup R of leaf` (source "leaf") or `backup mean R` (source "mean")."""

    role: Name
    source: str
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class OrderClause:
    role: Name
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class PruneClause:
    condition: Expression
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Clause = (
    StartClause
    | ExpandClause
    | LeafClause
    | UntilClause
    | SelectClause
    | BackupClause
    | OrderClause
    | PruneClause
)


# ---------------------------------------------------------------------------------------------
# Declarations and the program


@dataclass(frozen=True)
class ParamDecl:
    name: Name
    type: Name
    default: Expression
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class Header:
    name: Name
    params: tuple[ParamDecl, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class PromptDecl:
    template: StringLit
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class StepDecl:
    delimiter: StringLit
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class AnswerDecl:
    pattern: str  # the regex source, `\/` already turned into `/`
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class EquivalenceDecl:
    kind: Name
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class ModelDecl:
    name: Name
    kind: Name  # `generate` or `reward`, as written
    arguments: tuple[Argument, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class SearchDecl:
    kind: Name
    clauses: tuple[Clause, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True)
class ReturnDecl:
    method: Name
    arguments: tuple[Argument, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Declaration = (
    PromptDecl | StepDecl | AnswerDecl | EquivalenceDecl | ModelDecl | SearchDecl | ReturnDecl
)


@dataclass(frozen=True)
class Program:
    header: Header
    declarations: tuple[Declaration, ...]
    span: Span = field(default=NO_SPAN, compare=False, repr=False)


Node = (
    Name | Expression | Argument | Selection | Clause | ParamDecl | Header | Declaration | Program
)

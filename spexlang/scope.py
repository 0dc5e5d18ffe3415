"""What the checker knows while it walks a program: declared names and the diagnostics so far.

`Scope` holds the parameters and models by name; `Reporter` collects diagnostics against one
source. Both are created per check and passed explicitly.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field

from compiler.rules import RULES as SELECTION_RULES
from compiler.rules import Spelling
from spexlang import ast
from spexlang.checked import ValueType
from spexlang.diagnostics import Diagnostic, Severity, Source, Span

# Names every program can read, by what they are.
NODE_NAMES: dict[str, ValueType] = {
    "depth": ValueType.INT,
    "tokens": ValueType.INT,
    "answered": ValueType.BOOL,
    "eos": ValueType.BOOL,
}
COUNTED = ("leaves", "frontier", "nodes", "rollouts", "expansions", "answers")
FUNCTIONS = ("min", "max", "ceil", "floor", "abs", "exp", "log", "sqrt")
# Words that name a selection or answer rule, never a value (for clearer messages).
RULES = (
    *(r.written for r in SELECTION_RULES.values() if r.spelling is not Spelling.CLAUSE),
    "allocate",
    "vote",
    "best",
    "majority",
)


def suggestion(name: str, candidates: Iterable[str]) -> str:
    """'; did you mean `x`?' when a close spelling exists, else ''."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def span_of(node: ast.Node | Span) -> Span:
    return node if isinstance(node, Span) else node.span


@dataclass
class Reporter:
    """Collects the diagnostics of one check, in the order found."""

    source: Source
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def error(self, message: str, where: ast.Node | Span) -> None:
        self.diagnostics.append(Diagnostic(Severity.ERROR, message, span_of(where), self.source))

    def warning(self, message: str, where: ast.Node | Span) -> None:
        self.diagnostics.append(Diagnostic(Severity.WARNING, message, span_of(where), self.source))

    @property
    def has_errors(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.diagnostics)


@dataclass(frozen=True)
class DeclaredParam:
    type: ValueType | None  # None when the declared type is unknown (already reported)
    decl: ast.ParamDecl


@dataclass(frozen=True)
class DeclaredModel:
    kind: str  # "generate" | "reward" | "lookahead" | "" when unknown (already reported)
    decl: ast.ModelDecl


@dataclass
class Scope:
    """Declared parameters and models by name."""

    params: dict[str, DeclaredParam] = field(default_factory=dict)
    models: dict[str, DeclaredModel] = field(default_factory=dict)

    def reward_models(self) -> list[str]:
        return [n for n, m in self.models.items() if m.kind == "reward"]

    def value_models(self) -> list[str]:
        """Models whose name reads as a node's value: reward roles and lookahead values."""
        return [n for n, m in self.models.items() if m.kind in ("reward", "lookahead")]

    def generate_models(self) -> list[str]:
        return [n for n, m in self.models.items() if m.kind == "generate"]

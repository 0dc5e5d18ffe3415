"""The one diagnostics type of the toolchain: located messages rendered for people.

A located diagnostic renders as `file:line:col: severity: message`, then the source line and a
caret under the span. Errors that have no source location (a bad dataset row, an engine that is
down) are `UserError`s: one clear sentence, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Severity(Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Span:
    """A region of a source file; 1-based line and column, end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int


@dataclass(frozen=True)
class Source:
    """A program's text and the name it is shown under."""

    name: str
    text: str

    def line(self, number: int) -> str:
        lines = self.text.splitlines()
        return lines[number - 1] if 0 < number <= len(lines) else ""


@dataclass(frozen=True)
class Diagnostic:
    severity: Severity
    message: str
    span: Span | None = None
    source: Source | None = field(default=None, compare=False)

    def render(self) -> str:
        if self.span is None or self.source is None:
            where = f"{self.source.name}: " if self.source is not None else ""
            return f"{where}{self.severity.value}: {self.message}"
        s = self.span
        text = self.source.line(s.line).replace("\t", " ")
        width = (s.end_column - s.column) if s.end_line == s.line else len(text) - s.column + 1
        caret = " " * (s.column - 1) + "^" * max(1, width)
        return (
            f"{self.source.name}:{s.line}:{s.column}: {self.severity.value}: {self.message}\n"
            f"  {text}\n  {caret}"
        )


class UserError(Exception):
    """A mistake of the user's (bad input, bad option, unreachable server): shown, not raised."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CompileError(UserError):
    """A program failed to parse, check or compile; carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        super().__init__("\n".join(d.render() for d in diagnostics))

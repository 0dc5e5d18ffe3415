"""The compile pipeline's front door: .spx text or file in, a linted StrategyGraph out.

parse -> check -> parameter values -> lower -> passes -> lint. Anything a user did wrong comes out
as a `CompileError` carrying every located diagnostic; anything the compiler did wrong comes out
as a `CompileError` too, with an internal-error diagnostic at the program node it happened under,
so no traceback or compiler file name ever reaches a user.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from compiler import ir
from compiler.bounds import CHECK_CAP, GENERATE_CALL_LIMIT, bounds
from compiler.lint import lint
from compiler.lower import lower
from compiler.passes import run_passes
from spexlang import ast
from spexlang.checker import check
from spexlang.diagnostics import CompileError, Diagnostic, Severity, Source, Span, UserError
from spexlang.internal_errors import InternalCompilerError, internal_diagnostic
from spexlang.overrides import resolve_values
from spexlang.parser import parse


@dataclass(frozen=True)
class Compilation:
    """A compiled program with the warnings found on the way and what each pass changed."""

    graph: ir.StrategyGraph
    source: Source
    warnings: tuple[Diagnostic, ...]
    pass_changes: Mapping[str, list[str]]


def read_source(path_or_text: str | os.PathLike[str], name: str | None = None) -> Source:
    """A program from a path (a PathLike, an existing file, or a one-line name ending in .spx)
    or from program text; a UserError when the file cannot be read."""
    text_like = isinstance(path_or_text, str) and (
        "\n" in path_or_text
        or (not path_or_text.endswith(".spx") and not Path(path_or_text).is_file())
    )
    if text_like:
        return Source(name or "<program>", str(path_or_text))
    path = Path(path_or_text)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it ({e.strerror})") from None
    return Source(name or str(path_or_text), text)


def _by_position(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    return sorted(
        diagnostics, key=lambda d: (d.span.line, d.span.column) if d.span is not None else (0, 0)
    )


def _errors(diagnostics: list[Diagnostic]) -> bool:
    return any(d.severity is Severity.ERROR for d in diagnostics)


def _compile(source: Source, overrides: Mapping[str, str]) -> Compilation:
    program = parse(source.text, source.name)
    checked, diagnostics = check(program, source)
    warnings = [d for d in diagnostics if d.severity is Severity.WARNING]
    if checked is None or _errors(diagnostics):
        raise CompileError(diagnostics)
    values, value_errors = resolve_values(checked.name, checked.params, overrides, source)
    if value_errors:
        raise CompileError(_by_position(value_errors + warnings))
    try:
        lowered = lower(checked, values)
    except CompileError as e:
        raise CompileError(_by_position(e.diagnostics + warnings)) from None
    graph = lowered.graph
    with_pins = checked.search.decl
    try:
        changes = run_passes(graph)
    except Exception as e:
        raise InternalCompilerError(e, with_pins) from e
    problems = lint(graph)
    if problems:
        raise InternalCompilerError(AssertionError("; ".join(problems)), checked.search.decl)
    too_big = _over_the_limit(graph, checked.program, source)
    if too_big is not None:
        raise CompileError(_by_position([too_big, *warnings]))
    return Compilation(graph, source, tuple(warnings), changes)


def _over_the_limit(
    graph: ir.StrategyGraph, program: ast.Program, source: Source
) -> Diagnostic | None:
    """An error when the parameters make one query need more than GENERATE_CALL_LIMIT generate
    calls, naming the parameters and the bound they would need."""
    need = bounds(graph, CHECK_CAP).generate_calls
    if need is None or need <= GENERATE_CALL_LIMIT:
        return None
    numbers = [p for p in graph.params if isinstance(p.value, int | float)]
    numbers = [p for p in numbers if not isinstance(p.value, bool)]
    shown = ", ".join(f"{p.name} = {p.value!r}" for p in numbers)
    biggest = max(numbers, key=lambda p: abs(float(p.value)), default=None)
    decl = next((d for d in program.header.params if biggest and d.name.text == biggest.name), None)
    span = decl.span if decl is not None else program.header.name.span
    message = (
        f"with {shown}, one query may need {need} generate calls, more than the limit of "
        f"{GENERATE_CALL_LIMIT} (10^8); lower the parameters"
    )
    return Diagnostic(Severity.ERROR, message, span, source)


def compile_source(source: Source, overrides: Mapping[str, str] | None = None) -> Compilation:
    """Compile a program; raises CompileError with every diagnostic (located) on failure."""
    try:
        return _compile(source, overrides or {})
    except CompileError:
        raise
    except InternalCompilerError as e:
        diagnostic = internal_diagnostic(e.cause, e.node.span, source, _doing(e.node))
        raise CompileError([diagnostic]) from None
    except RecursionError:
        message = "the program nests too deeply to compile; simplify its expressions"
        raise CompileError(
            [Diagnostic(Severity.ERROR, message, Span(1, 1, 1, 2), source)]
        ) from None
    except Exception as e:
        diagnostic = internal_diagnostic(e, Span(1, 1, 1, 2), source, "compiling the program")
        raise CompileError([diagnostic]) from None


def _doing(node: ast.Node) -> str:
    words = {
        ast.Header: "checking the strategy header",
        ast.ModelDecl: "compiling this model",
        ast.SearchDecl: "compiling this search",
        ast.ReturnDecl: "compiling this return",
        ast.Selection: "compiling this selection",
        ast.SelectClause: "compiling this selection",
        ast.OrderClause: "compiling this selection",
        ast.LeafClause: "compiling this leaf test",
        ast.UntilClause: "compiling this stop condition",
    }
    return words.get(type(node), "compiling this part of the program")


def check_source(source: Source) -> list[Diagnostic]:
    """Every diagnostic of compiling `source` with its defaults (errors and warnings), in order."""
    try:
        compilation = compile_source(source)
    except CompileError as e:
        return e.diagnostics
    return list(compilation.warnings)


def load_program(
    path_or_text: str | os.PathLike[str],
    overrides: Mapping[str, str] | None = None,
    *,
    name: str | None = None,
) -> ir.StrategyGraph:
    """Compile a .spx program (a path or its text) with `-p`-style string overrides.

    Raises `CompileError` (a `UserError`) with all diagnostics when the program or an override is
    wrong, and `UserError` when the file cannot be read.
    """
    return compile_source(read_source(path_or_text, name), overrides).graph

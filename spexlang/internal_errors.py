"""Failures inside the compiler, reported at the program node being compiled (Triton-style).

A bug in a compiler phase must not show a user a Python traceback. Each phase runs its work on
one program node at a time inside `InternalErrorScope.at(node)`; an unexpected exception there is
wrapped once, at the innermost node, and the pipeline turns it into a located diagnostic that
names the exception but none of the compiler's own files.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from spexlang import ast
from spexlang.diagnostics import CompileError, Diagnostic, Severity, Source, Span


class InternalCompilerError(Exception):
    """An unexpected exception, pinned to the innermost program node it happened under."""

    def __init__(self, cause: BaseException, node: ast.Node) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.node = node


@contextmanager
def pinned_to(node: ast.Node) -> Iterator[None]:
    """Run a block on behalf of `node`: an unexpected failure in it is pinned to `node`."""
    try:
        yield
    except (CompileError, InternalCompilerError):
        raise
    except Exception as e:
        raise InternalCompilerError(e, node) from e


def internal_diagnostic(
    cause: BaseException, span: Span | None, source: Source, doing: str
) -> Diagnostic:
    """The located diagnostic a user sees for a compiler bug."""
    detail = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    what = f"{type(cause).__name__}: {detail}" if detail else type(cause).__name__
    message = (
        f"internal compiler error while {doing} ({what}); this is a bug in spex, not in the "
        "program: please report it"
    )
    if span is not None and span.line == 0:
        span = None
    return Diagnostic(Severity.ERROR, message, span, source)

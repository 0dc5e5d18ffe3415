"""What the `spex check`, `spex compile` and `spex graph` commands share.

Diagnostics go to stderr exactly as `Diagnostic.render()` writes them; a failed compile is an
exit code of 1 after its diagnostics, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TextIO

from compiler.load import Compilation, compile_source, read_source
from spexlang.diagnostics import CompileError, Diagnostic, UserError
from spexlang.overrides import split_override


def add_program_arguments(parser: argparse.ArgumentParser) -> None:
    """FILE and the repeatable `-p NAME=VALUE`."""
    parser.add_argument("file", metavar="FILE", help="the .spx program")
    parser.add_argument(
        "-p",
        "--param",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="override a parameter's default (repeatable), e.g. -p width=32",
    )


def overrides_from(raw: Sequence[str]) -> dict[str, str]:
    """`-p` values as a name -> text mapping; the last of repeated names wins."""
    return dict(split_override(r) for r in raw)


def print_diagnostics(diagnostics: Iterable[Diagnostic], stream: TextIO | None = None) -> None:
    out = stream if stream is not None else sys.stderr
    for d in diagnostics:
        print(d.render(), file=out)


def compile_or_report(file: str, raw_overrides: Sequence[str]) -> Compilation | None:
    """Compile FILE, printing warnings; on failure print every diagnostic and return None."""
    source = read_source(Path(file))
    try:
        compilation = compile_source(source, overrides_from(raw_overrides))
    except CompileError as e:
        print_diagnostics(e.diagnostics)
        return None
    print_diagnostics(compilation.warnings)
    return compilation


def write_output(path: str, data: str | bytes) -> None:
    """Write `data` to `path`; a UserError (not a traceback) when that is impossible."""
    try:
        if isinstance(data, bytes):
            Path(path).write_bytes(data)
        else:
            Path(path).write_text(data, encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror}") from None

"""`spex check FILE...`: report every error and warning of .spx programs without running them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from compiler.command_line import print_diagnostics
from compiler.load import check_source, read_source
from spexlang.diagnostics import Severity


def run(args: argparse.Namespace) -> int:
    failed = False
    for file in args.files:
        diagnostics = check_source(read_source(Path(file)))
        print_diagnostics(diagnostics)
        errors = sum(d.severity is Severity.ERROR for d in diagnostics)
        warnings = len(diagnostics) - errors
        if errors:
            failed = True
        else:
            note = f" ({warnings} warning{'s' if warnings != 1 else ''})" if warnings else ""
            print(f"{file}: ok{note}")
    return 1 if failed else 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check",
        help="check .spx programs for errors and warnings",
        description=(
            "Parse, check and compile each program with its default parameters and print every "
            "error and warning as FILE:LINE:COL: severity: message, with the source line and a "
            "caret. Exit status 0 when no program has errors (warnings allowed), 1 otherwise."
        ),
    )
    parser.add_argument("files", metavar="FILE", nargs="+", help="a .spx program")
    parser.set_defaults(func=run)

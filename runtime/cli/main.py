"""The `spex` command: one subcommand per module, each registering its own parser."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from spexlang.diagnostics import CompileError, UserError
from spexlang.version import __version__

COMMANDS = ("check", "compile", "graph", "run", "bench", "view", "serve", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spex",
        description="Tree-search reasoning strategies for LLMs: "
        "compile, inspect and run .spx programs.",
    )
    parser.add_argument("--version", action="version", version=f"spex {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        # Each command module imports its heavy dependencies (torch, aiohttp) only when it runs.
        importlib.import_module(f"runtime.cli.command_{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # also while the parser is built: no traceback for a Ctrl-C
        print("spex: interrupted", file=sys.stderr)
        return 130


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # For run records (`run.json`): the command as typed, also when main() is called in process.
    args.command_line = ("spex", *(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code: int = args.func(args)
    except CompileError as e:
        # Located diagnostics already start with `file:line:col:`.
        print(e.message, file=sys.stderr)
        return 1
    except UserError as e:
        print(f"spex: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("spex: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())

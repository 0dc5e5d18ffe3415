"""`spex graph FILE [-p NAME=VALUE ...] --format text|json|dot|svg|png [-o OUT]`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from compiler.command_line import add_program_arguments, compile_or_report, write_output
from compiler.export_dot import to_dot
from compiler.export_image import render_image
from compiler.export_json import to_json
from compiler.export_text import to_text
from spexlang.diagnostics import UserError

FORMATS = ("text", "json", "dot", "svg", "png")


def run(args: argparse.Namespace) -> int:
    if args.format == "png" and not args.output:
        raise UserError("png output is binary; give a file with -o, e.g. -o graph.png")
    compilation = compile_or_report(args.file, args.param)
    if compilation is None:
        return 1
    graph = compilation.graph
    data: str | bytes
    if args.format == "text":
        data = to_text(graph)
    elif args.format == "json":
        data = to_json(graph)
    elif args.format == "dot":
        data = to_dot(graph)
    else:
        data = render_image(graph, args.format)
    if args.output:
        write_output(args.output, data)
    elif isinstance(data, bytes):
        sys.stdout.write(data.decode("utf-8"))
    else:
        sys.stdout.write(data)
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "graph",
        help="show a compiled program's dataflow graph",
        description=(
            "Compile a program and print its graph: `text` is one line per op (`~%x` marks a "
            "speculative reward input, `^%x` the loop input), `json` is networkx node-link "
            "data, `dot` is Graphviz source, `svg` and `png` are drawn by Graphviz's `dot`."
        ),
    )
    add_program_arguments(parser)
    parser.add_argument("--format", choices=FORMATS, default="text", help="default: text")
    parser.add_argument("-o", "--output", metavar="OUT", help="write to OUT instead of stdout")
    parser.set_defaults(func=run)

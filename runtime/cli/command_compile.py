"""`spex compile FILE [-p NAME=VALUE ...] [-o graph.json]`: compile and show the static bounds."""

from __future__ import annotations

import argparse
from typing import Any

from compiler import ir
from compiler.bounds import bounds
from compiler.command_line import add_program_arguments, compile_or_report, write_output
from compiler.export_json import to_json
from compiler.export_text import bound_text
from compiler.render import params_text


def summary(graph: ir.StrategyGraph, file: str) -> str:
    """The strategy, its parameters, its graph's size and its worst-case bounds as a table."""
    b = bounds(graph)
    edges = graph.edges()
    speculative = sum(e.speculative for e in edges)
    rows = [
        ("generate calls", b.generate_calls),
        ("reward calls", b.reward_calls),
        ("tokens generated", b.tokens),
        ("tree depth", b.depth),
    ]
    lines = [
        f"strategy {graph.strategy}({params_text(graph)})  [{file}]",
        f"graph: {graph.graph.number_of_nodes()} ops, {len(edges)} edges, "
        f"{speculative} speculative reward edge{'s' if speculative != 1 else ''}",
        "",
        "worst case per query",
    ]
    lines += [f"  {name:<18}{bound_text(value):>12}" for name, value in rows]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    compilation = compile_or_report(args.file, args.param)
    if compilation is None:
        return 1
    print(summary(compilation.graph, args.file))
    if args.output:
        write_output(args.output, to_json(compilation.graph))
        print(f"wrote {args.output}")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "compile",
        help="compile a .spx program and show its static bounds",
        description=(
            "Compile a program with its defaults or -p overrides and print the worst-case "
            "generate calls, reward calls, tokens and depth of one query. With -o, also write "
            "the compiled graph as JSON (networkx node-link data with a version field)."
        ),
    )
    add_program_arguments(parser)
    parser.add_argument("-o", "--output", metavar="GRAPH.json", help="write the graph as JSON")
    parser.set_defaults(func=run)

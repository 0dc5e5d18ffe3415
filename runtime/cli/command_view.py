"""`spex view TRACE_DIR -o view.html`: one self-contained HTML page of a run's traces.

The page shows, for each query, the search tree of every mode (main, speculative-kept,
speculative-wasted and aborted nodes, rewards on hover, answer classes, the path's text on click)
and a timeline of its engine requests on the engine clock, the modes of a `spex bench --trace`
directory side by side on one time axis, and a summary of each run. It needs no network and no
server: open the file in any browser.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from spexlang.diagnostics import UserError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "view",
        help="write an offline HTML page of a trace's search trees and timelines",
        description=(
            "Read the traces under TRACE_DIR (written by `spex run --trace` or "
            "`spex bench --trace`) and write one self-contained HTML page that works offline."
        ),
    )
    parser.add_argument("trace_dir", metavar="TRACE_DIR", help="a directory written by --trace")
    parser.add_argument(
        "-o", "--output", default="view.html", metavar="FILE", help="default: view.html"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace FILE if it already exists"
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    parser.set_defaults(func=view_command)


def view_command(args: argparse.Namespace) -> int:
    from runtime.view.page import render_page
    from runtime.view.traces import find_runs

    output = Path(args.output)
    if output.is_dir():
        raise UserError(f"-o {output} is a directory; give the HTML file to write")
    if output.exists() and not args.overwrite:
        raise UserError(f"{output} already exists; pass --overwrite to replace it")
    runs = find_runs(args.trace_dir)
    page = render_page(runs, str(args.trace_dir))
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, output)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise UserError(f"cannot write {output}: {e.strerror}") from None
    if not args.quiet:
        queries = len({q for run in runs for q in run.nodes})
        print(
            f"spex: wrote {output} ({len(runs)} runs, {queries} queries, "
            f"{sum(r.node_count for r in runs)} nodes)",
            file=sys.stderr,
        )
    return 0

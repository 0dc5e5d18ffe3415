"""SVG and PNG pictures of a strategy graph, drawn by Graphviz's `dot` program."""

from __future__ import annotations

import shutil
import subprocess

from compiler import ir
from compiler.export_dot import to_dot
from spexlang.diagnostics import UserError

IMAGE_FORMATS = ("svg", "png")


def render_image(graph: ir.StrategyGraph, fmt: str) -> bytes:
    """The graph drawn as `fmt` (svg or png); a UserError when Graphviz is missing or fails."""
    if fmt not in IMAGE_FORMATS:
        raise UserError(f"cannot draw {fmt!r}; the image formats are svg and png")
    dot = shutil.which("dot")
    if dot is None:
        raise UserError(
            "drawing svg or png needs Graphviz's `dot` program, which is not installed; install "
            "Graphviz (e.g. `apt-get install graphviz` or `brew install graphviz`) or use "
            "--format dot"
        )
    try:
        done = subprocess.run(
            [dot, f"-T{fmt}"], input=to_dot(graph).encode(), capture_output=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"Graphviz's `dot` failed to run: {e}") from None
    if done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip()
        raise UserError(f"Graphviz's `dot` failed: {message}")
    return done.stdout

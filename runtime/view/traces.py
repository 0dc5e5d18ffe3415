"""Trace directories as the viewer reads them, through runtime/trace_reader.py (the versioned
reader of docs/traces.md): the one place the viewer meets the trace format.

A TRACE_DIR is either one run's trace (`trace.jsonl` and `run.json`, from `spex run --trace`) or
a tree of them (`spex bench --trace` writes `DIR/<mode>/`, and `DIR/c<N>/<mode>/` for several
concurrency levels). Runs that sit in the same directory are one comparison: the viewer shows
them side by side. Records are handed on as their JSON dicts, so the page reads every field
the reader knows (step text, states) and old version-1 traces alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.tracefile import TRACE_FILE
from spexlang.diagnostics import UserError

# The order in which modes are shown, baseline first.
MODE_ORDER = ("sync", "spec", "spec+et")


@dataclass
class TraceRun:
    """One run's trace: what was run, and its node and request records grouped by query."""

    label: str  # the run's directory relative to TRACE_DIR ("." for TRACE_DIR itself)
    group: str  # the directory holding the runs it is compared with
    manifest: dict[str, Any]
    nodes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    requests: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        return str(self.manifest.get("mode") or Path(self.label).name)

    @property
    def node_count(self) -> int:
        return sum(len(v) for v in self.nodes.values())


def find_runs(directory: str | Path) -> list[TraceRun]:
    """Every trace under `directory`, grouped runs in mode order; a UserError if there is none.
    Files are read by runtime/trace_reader.py (h5's versioned reader)."""
    from runtime.trace_reader import find_traces

    root = Path(directory)
    if not root.exists():
        raise UserError(f"trace directory not found: {directory}")
    if not root.is_dir():
        raise UserError(f"{directory} is a file; give the directory that --trace wrote")
    if not any(root.rglob(TRACE_FILE)):
        raise UserError(f"no {TRACE_FILE} under {directory}: give a directory written by --trace")
    runs = []
    for trace in find_traces(root):
        rel = trace.path.parent.relative_to(root)
        label = str(rel) if str(rel) != "." else "."
        manifest = dict(trace.manifest or {})
        if trace.mode is not None:
            manifest.setdefault("mode", trace.mode)
        run = TraceRun(
            label=label, group=str(rel.parent) if label != "." else ".", manifest=manifest
        )
        for node in trace.nodes:
            run.nodes.setdefault(node.query_id, []).append(node.to_json())
        for request in trace.requests:
            run.requests.setdefault(request.query_id, []).append(request.to_json())
        runs.append(run)
    return sorted(runs, key=lambda r: (_natural(r.group), _mode_rank(r.mode), r.label))


def _mode_rank(mode: str) -> int:
    return MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER)


def _natural(text: str) -> tuple[int, str]:
    """`c4` before `c16`: shorter names first, then alphabetical."""
    return (len(text), text)

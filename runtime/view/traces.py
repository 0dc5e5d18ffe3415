"""Reading trace directories for the viewer: the one place that knows the trace's file format.

A TRACE_DIR is either one run's trace (`trace.jsonl` and `run.json`, from `spex run --trace`) or
a tree of them (`spex bench --trace` writes `DIR/<mode>/`, and `DIR/c<N>/<mode>/` for several
concurrency levels). Runs that sit in the same directory are one comparison: the viewer shows
them side by side. Records are kept as plain dicts, so fields a newer trace adds (step text,
answer classes) reach the page without a change here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.tracefile import RUN_FILE, TRACE_FILE
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
    skipped_lines: int = 0  # lines that were not JSON (a run killed mid-write)

    @property
    def mode(self) -> str:
        return str(self.manifest.get("mode") or Path(self.label).name)

    @property
    def node_count(self) -> int:
        return sum(len(v) for v in self.nodes.values())


def find_runs(directory: str | Path) -> list[TraceRun]:
    """Every trace under `directory`, grouped runs in mode order; a UserError if there is none."""
    root = Path(directory)
    if not root.exists():
        raise UserError(f"trace directory not found: {directory}")
    if not root.is_dir():
        raise UserError(f"{directory} is a file; give the directory that --trace wrote")
    files = sorted(root.rglob(TRACE_FILE))
    if not files:
        raise UserError(f"no {TRACE_FILE} under {directory}: give a directory written by --trace")
    runs = [read_run(f.parent, root) for f in files]
    return sorted(runs, key=lambda r: (_natural(r.group), _mode_rank(r.mode), r.label))


def read_run(directory: Path, root: Path) -> TraceRun:
    rel = directory.relative_to(root)
    manifest: dict[str, Any] = {}
    manifest_path = directory / RUN_FILE
    if manifest_path.is_file():
        try:
            loaded = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise UserError(f"{manifest_path}: not a readable run.json ({e})") from None
        if isinstance(loaded, dict):
            manifest = loaded
    run = TraceRun(
        label=str(rel) if str(rel) != "." else ".",
        group=str(rel.parent) if str(rel) != "." else ".",
        manifest=manifest,
    )
    try:
        lines = (directory / TRACE_FILE).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read {directory / TRACE_FILE}: {e}") from None
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            run.skipped_lines += 1
            continue
        if not isinstance(record, dict):
            run.skipped_lines += 1
            continue
        kind = record.get("type")
        qid = str(record.get("query_id"))
        if kind == "node":
            run.nodes.setdefault(qid, []).append(record)
        elif kind == "request":
            run.requests.setdefault(qid, []).append(record)
    return run


def _mode_rank(mode: str) -> int:
    return MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER)


def _natural(text: str) -> tuple[int, str]:
    """`c4` before `c16`: shorter names first, then alphabetical."""
    return (len(text), text)

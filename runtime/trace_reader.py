"""Reading a trace directory back: `trace.jsonl` and `run.json` into typed records.

`load_trace(DIR)` reads one run's trace (DIR/trace.jsonl, or the file itself) into a `Trace`:
its run headers (`TraceRun`), its nodes (`TraceNode`) and engine requests (`TraceRequest`),
grouped per query (`QueryTrace`: the tree, each node's path text), and DIR/run.json when it is
there. `find_traces(DIR)` reads every trace at or under DIR (one per mode, and per concurrency
level, when `spex bench --trace DIR` ran several). docs/traces.md documents every field.

Every problem is a `TraceError` (a `UserError`: one line, `spex: ...`) naming the file and
line: not JSON, not an object, an unknown record type, a missing field or one of the wrong type,
a trace written by a newer spex. Traces of version 1 (before run headers, texts and sequence
numbers) still read: their new fields come back as their defaults.
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

from runtime.records import TRACE_VERSION, TraceNode, TraceRequest, TraceRun
from spexlang.diagnostics import UserError

__all__ = [
    "QueryTrace",
    "Trace",
    "TraceError",
    "TraceNode",
    "TraceRequest",
    "TraceRun",
    "find_traces",
    "load_trace",
]

TRACE_FILE = "trace.jsonl"
RUN_FILE = "run.json"
OLDEST_VERSION = 1

R = TypeVar("R", TraceRun, TraceNode, TraceRequest)


class TraceError(UserError):
    """A trace file that cannot be read: the message names the file, the line and why."""


@dataclass(frozen=True)
class QueryTrace:
    """One query's part of a trace: its search tree's nodes and its engine requests."""

    query_id: str
    nodes: tuple[TraceNode, ...]  # in the executor's creation order, root first
    requests: tuple[TraceRequest, ...]  # in enqueue order
    delimiter: str | None  # the step delimiter (None in a version-1 trace)

    def node(self, node_id: str) -> TraceNode:
        for n in self.nodes:
            if n.node_id == node_id:
                return n
        raise KeyError(node_id)

    @property
    def root(self) -> TraceNode:
        for n in self.nodes:
            if n.parent_id is None:
                return n
        raise TraceError(f"query {self.query_id} has no root node in its trace")

    def children(self, node_id: str) -> tuple[TraceNode, ...]:
        """Every node made under `node_id`, speculative and aborted ones included."""
        return tuple(n for n in self.nodes if n.parent_id == node_id)

    def path(self, node_id: str) -> tuple[TraceNode, ...]:
        """The nodes from the root down to `node_id`."""
        by_id = {n.node_id: n for n in self.nodes}
        out: list[TraceNode] = []
        current: str | None = node_id
        while current is not None:
            n = by_id.get(current)
            if n is None:
                raise KeyError(current)
            out.append(n)
            current = n.parent_id
        out.reverse()
        return tuple(out)

    def steps(self, node_id: str) -> tuple[str, ...]:
        """The steps' text from the root's first child to `node_id` ('' where not recorded)."""
        return tuple(n.text or "" for n in self.path(node_id)[1:])

    def path_text(self, node_id: str) -> str | None:
        """What the policy saw after this node: the prompt, then every step and delimiter.
        None when the trace has no texts (version 1)."""
        path = self.path(node_id)
        if self.delimiter is None or path[0].text is None:
            return None
        return path[0].text + "".join((n.text or "") + self.delimiter for n in path[1:])

    def requests_of(self, node_id: str) -> tuple[TraceRequest, ...]:
        return tuple(r for r in self.requests if r.node_id == node_id)


@dataclass(frozen=True)
class Trace:
    """A trace directory read back."""

    path: Path  # the trace.jsonl file
    version: int  # the newest trace_version among its run headers (1: no header)
    runs: tuple[TraceRun, ...]  # one header per run written into the file (resume appends)
    nodes: tuple[TraceNode, ...]
    requests: tuple[TraceRequest, ...]
    manifest: Mapping[str, Any] | None  # run.json beside it, when there is one

    @property
    def mode(self) -> str | None:
        if self.runs:
            return self.runs[-1].mode
        mode = (self.manifest or {}).get("mode")
        return mode if isinstance(mode, str) else None

    @property
    def budget_cap(self) -> int | None:
        """The global cap M on in-flight policy requests (None in a version-1 trace)."""
        return self.runs[-1].budget_cap if self.runs else None

    @property
    def delimiter(self) -> str | None:
        return self.runs[-1].delimiter if self.runs else None

    def query_ids(self) -> tuple[str, ...]:
        """The queries in the order their records appear (completion order)."""
        return tuple(dict.fromkeys(n.query_id for n in self.nodes))

    def queries(self) -> dict[str, QueryTrace]:
        nodes: dict[str, list[TraceNode]] = {}
        requests: dict[str, list[TraceRequest]] = {}
        for n in self.nodes:
            nodes.setdefault(n.query_id, []).append(n)
        for r in self.requests:
            requests.setdefault(r.query_id, []).append(r)
        return {
            qid: QueryTrace(qid, tuple(ns), tuple(requests.get(qid, ())), self.delimiter)
            for qid, ns in nodes.items()
        }

    def query(self, query_id: str) -> QueryTrace:
        found = self.queries().get(query_id)
        if found is None:
            raise KeyError(query_id)
        return found


def load_trace(path: str | Path) -> Trace:
    """Read a trace: a directory holding trace.jsonl (and run.json), or a trace.jsonl file."""
    given = Path(path)
    file = given / TRACE_FILE if given.is_dir() else given
    if not file.exists():
        where = f"{given} has no {TRACE_FILE}" if given.is_dir() else f"{given}: no such trace"
        raise TraceError(f"{where} (write one with spex run --trace DIR)")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TraceError(f"{file}: not a UTF-8 text file, so not a spex trace") from None
    except OSError as e:
        raise TraceError(f"cannot read trace {file}: {e.strerror}") from None
    runs: list[TraceRun] = []
    nodes: list[TraceNode] = []
    requests: list[TraceRequest] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{file}:{number}"
        row = _parse_line(line, where)
        kind = row.get("type")
        if kind == "run":
            header = _record(TraceRun, row, where)
            if not OLDEST_VERSION <= header.trace_version <= TRACE_VERSION:
                raise TraceError(_version_message(where, header.trace_version))
            runs.append(header)
        elif kind == "node":
            nodes.append(_record(TraceNode, row, where))
        elif kind == "request":
            requests.append(_record(TraceRequest, row, where))
        else:
            raise TraceError(
                f"{where}: unknown record type {kind!r} (expected 'run', 'node' or 'request')"
            )
    version = max((r.trace_version for r in runs), default=OLDEST_VERSION)
    return Trace(file, version, tuple(runs), tuple(nodes), tuple(requests), _manifest(file))


def find_traces(path: str | Path) -> list[Trace]:
    """Every trace at or under `path` (`spex bench --trace DIR` writes `DIR/<mode>/`, and
    `DIR/c<N>/<mode>/` for several concurrency levels), ordered by their directories."""
    root = Path(path)
    if not root.is_dir():
        raise TraceError(f"{root}: not a directory")
    found = sorted(file.parent for file in root.rglob(TRACE_FILE))
    if not found:
        raise TraceError(f"no {TRACE_FILE} in {root} or its subdirectories")
    return [load_trace(d) for d in found]


def _version_message(where: str, version: int) -> str:
    if version > TRACE_VERSION:
        return (
            f"{where}: trace version {version} was written by a newer spex; this one reads "
            f"versions {OLDEST_VERSION} to {TRACE_VERSION}"
        )
    return f"{where}: trace version {version} is not one spex writes"


def _parse_line(line: str, where: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        cut = (
            " (the line is cut off: did the run die while writing it?)"
            if e.pos >= len(line) - 1
            else ""
        )
        raise TraceError(f"{where}: not JSON: {e.msg}{cut}") from None
    if not isinstance(row, dict):
        raise TraceError(f"{where}: a trace line is a JSON object, got {type(row).__name__}")
    return row


def _record(cls: type[R], row: dict[str, Any], where: str) -> R:
    """One record from its JSON object, every field checked against its declared type."""
    values: dict[str, Any] = {}
    hints = _hints(cls)
    for f in fields(cls):
        if f.name not in row:
            if f.default is MISSING and f.default_factory is MISSING:
                raise TraceError(f"{where}: a {row['type']} record needs the field '{f.name}'")
            continue
        value = row[f.name]
        if not _fits(value, hints[f.name]):
            raise TraceError(
                f"{where}: field '{f.name}' of a {row['type']} record has the wrong type "
                f"({json.dumps(value)[:60]})"
            )
        values[f.name] = _shaped(value)
    return cls(**values)


def _hints(cls: type) -> dict[str, Any]:
    return _HINTS[cls]


# The records' field types, resolved once (the annotations are strings under __future__).
_HINTS: dict[type, dict[str, Any]] = {
    cls: get_type_hints(cls) for cls in (TraceRun, TraceNode, TraceRequest)
}


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON value has the shape of a field's annotation (ints count as floats)."""
    origin = get_origin(hint)
    if origin is Union or origin is types.UnionType:
        return any(_fits(value, arm) for arm in get_args(hint))
    if hint is type(None):
        return value is None
    if hint is Any:
        return True
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (Mapping, dict):
        key, item = get_args(hint)
        return isinstance(value, dict) and all(
            _fits(k, key) and _fits(v, item) for k, v in value.items()
        )
    if origin is tuple:
        args = get_args(hint)
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    return False


def _shaped(value: Any) -> Any:
    """JSON lists back to the tuples the records hold."""
    if isinstance(value, list):
        return tuple(_shaped(v) for v in value)
    if isinstance(value, dict):
        return {k: _shaped(v) for k, v in value.items()}
    return value


def _manifest(trace_file: Path) -> Mapping[str, Any] | None:
    path = trace_file.with_name(RUN_FILE)
    if not path.exists():
        return None
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TraceError(f"{path}: not a readable run.json ({e})") from None
    if not isinstance(body, dict):
        raise TraceError(f"{path}: run.json holds a JSON object, got {type(body).__name__}")
    return body

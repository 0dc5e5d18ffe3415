"""The trace directory of a run: `trace.jsonl` (search-tree nodes and engine requests) and
`run.json` (what was run: program, parameters, engine, mode, seeds, command line, version).

`TraceFileSink` implements the executor's trace sink: the run's header (`TraceRun`) and every
`TraceNode` and `TraceRequest` it is given become one JSON line each (`{"type": "run", ...}`,
`{"type": "node", ...}`, `{"type": "request", ...}`); docs/traces.md documents every field and
runtime/trace_reader.py reads them back. A resumed run appends, with a header of its own. Lines are
buffered and flushed every few hundred records and at close, so tracing costs little; a run that
dies keeps all but the last unflushed records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from runtime.records import TRACE_VERSION, TraceNode, TraceRequest, TraceRun
from spexlang.diagnostics import UserError
from spexlang.version import __version__

TRACE_FILE = "trace.jsonl"
RUN_FILE = "run.json"
FLUSH_EVERY = 256


@dataclass(frozen=True)
class RunManifest:
    """What run.json records, so that a trace can be read (and a run repeated) later."""

    program: str  # the path given on the command line
    strategy: str
    parameters: Mapping[str, object]  # resolved values, defaults and -p overrides
    engine: str  # the --engine spec, e.g. "sim:h100-7b"
    engine_options: Mapping[str, object]
    mode: str
    concurrency: int
    dataset: str
    base_seed: int
    query_seeds: Mapping[str, int]
    command_line: tuple[str, ...]
    extra: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "spex_version": __version__,
            "program": self.program,
            "strategy": self.strategy,
            "parameters": dict(self.parameters),
            "engine": self.engine,
            "engine_options": dict(self.engine_options),
            "mode": self.mode,
            "concurrency": self.concurrency,
            "dataset": self.dataset,
            "base_seed": self.base_seed,
            "query_seeds": dict(self.query_seeds),
            "command_line": list(self.command_line),
            **dict(self.extra),
        }


class TraceFileSink:
    """Writes a run's trace records to DIR/trace.jsonl; the executor calls node() and request()."""

    def __init__(self, directory: str | Path, *, append: bool = False) -> None:
        self.directory = Path(directory)
        if self.directory.exists() and not self.directory.is_dir():
            raise UserError(f"--trace {directory} is a file; give a directory")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] = (self.directory / TRACE_FILE).open(
                "a" if append else "w", encoding="utf-8"
            )
        except OSError as e:
            raise UserError(f"cannot write trace directory {directory}: {e.strerror}") from None
        self._pending = 0
        self.nodes = 0
        self.requests = 0
        self.runs: list[TraceRun] = []

    def run(self, record: TraceRun) -> None:
        self.runs.append(record)
        self._write(record.to_json())

    def node(self, record: TraceNode) -> None:
        self.nodes += 1
        self._write(record.to_json())

    def request(self, record: TraceRequest) -> None:
        self.requests += 1
        self._write(record.to_json())

    def _write(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._pending += 1
        if self._pending >= FLUSH_EVERY:
            self._file.flush()
            self._pending = 0

    def write_manifest(self, manifest: RunManifest, **finished: object) -> None:
        """Write run.json (atomically); called at the start and again with the final counts."""
        body = {**manifest.to_json(), "trace_version": TRACE_VERSION, **finished}
        if self.runs:  # known once the executor has started: the budget cap M it ran under
            body["budget_cap"] = self.runs[-1].budget_cap
        path = self.directory / RUN_FILE
        tmp = path.with_name(f".{RUN_FILE}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(body, indent=2, ensure_ascii=False, default=str) + "\n")
        os.replace(tmp, path)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> TraceFileSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

"""Fault suite, property: a `spex run` on the sim interrupted after any number of finished
queries (Ctrl-C, or a kill that cuts the last row mid-write), then continued with `--resume`,
ends with exactly the rows of an uninterrupted run, but for their timestamps."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import pytest
from fault_support import REBASE, rows, sim_run, write_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runtime.results as results
from runtime.cli.main import main
from runtime.run_record import read_record

# Distinct questions: two queries of one question (--repeat) can share a node of the sim's, whose
# reward then comes from whichever query generated it first (see the h4 report), so there a
# resumed run may differ from an uninterrupted one in a leaf's reward.
QUERIES = 8
TIMESTAMPS = ("latency_s", "started_at", "finished_at")
# In spec mode how much is speculated depends on how many queries share the budget at once (a
# resumed run has fewer): its accounting may differ, never the search's tree or answer.
SPECULATION = (
    "tokens_generated", "spec_tokens_kept", "spec_tokens_wasted", "spec_requests", "spec_hits",
    "hit_rate", "generate_calls", "reward_calls",
)  # fmt: skip


def by_id(path: Path, mode: str) -> dict[str, dict[str, Any]]:
    skip = TIMESTAMPS + (SPECULATION if mode == "spec" else ())
    return {r["query_id"]: {k: v for k, v in r.items() if k not in skip} for r in rows(path)}


def command(data: Path, out: Path, mode: str, *extra: str) -> list[str]:
    return sim_run(REBASE, data, "--mode", mode, "-o", str(out), "--quiet", *extra)


_baselines: dict[str, dict[str, dict[str, Any]]] = {}


def baseline(mode: str) -> dict[str, dict[str, Any]]:
    """The uninterrupted run's rows (computed once per mode)."""
    if mode not in _baselines:
        with tempfile.TemporaryDirectory() as tmp:
            data, out = write_dataset(Path(tmp) / "d.jsonl", QUERIES), Path(tmp) / "r.jsonl"
            assert main(command(data, out, mode)) == 0
            _baselines[mode] = by_id(out, mode)
    return _baselines[mode]


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mode=st.sampled_from(["sync", "spec"]),
    finished=st.integers(min_value=0, max_value=QUERIES - 1),
    cut=st.one_of(st.none(), st.integers(min_value=1, max_value=300)),
)
def test_interrupt_then_resume_gives_the_uninterrupted_rows(
    monkeypatch: pytest.MonkeyPatch, mode: str, finished: int, cut: int | None
) -> None:
    expected = baseline(mode)
    real_write = results.ResultsWriter.write

    def write_then_interrupt(self: results.ResultsWriter, result: Any) -> None:
        if self.written >= finished:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C once `finished` rows are written
            return
        real_write(self, result)

    with tempfile.TemporaryDirectory() as tmp:
        data, out = write_dataset(Path(tmp) / "d.jsonl", QUERIES), Path(tmp) / "r.jsonl"
        with monkeypatch.context() as patch:
            patch.setattr(results.ResultsWriter, "write", write_then_interrupt)
            assert main(command(data, out, mode)) == 130
        record = read_record(out)
        assert record is not None and record["status"] == "interrupted"
        assert len(rows(out)) == finished
        if cut is not None:  # a kill in the middle of writing the next row
            partial = json.dumps(next(iter(expected.values())))[:cut]
            with out.open("a") as f:
                f.write(partial)
        assert main(command(data, out, mode, "--resume")) == 0
        assert by_id(out, mode) == expected
        assert len(out.read_text().splitlines()) == QUERIES
        final = read_record(out)
        assert final is not None and final["status"] == "finished"

"""Helpers of the fault suite (tests/test_faults_*.py): running the CLI in process or as a
subprocess, a small dataset, and reading result rows."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.cli.main import main

REPO = Path(__file__).resolve().parents[1]
REBASE = str(REPO / "programs" / "rebase.spx")
BEAM = str(REPO / "programs" / "beam_search.spx")
PAIRS = ((2, 3), (7, 5), (11, 4), (6, 9), (8, 8), (13, 2), (4, 17), (9, 12))
QUESTIONS = [(f"What is {a} + {b}?", str(a + b)) for a, b in PAIRS]


def write_dataset(path: Path, n: int = 4) -> Path:
    path.write_text(
        "".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QUESTIONS[:n])
    )
    return path


def spex(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run `spex ARGV` in process; a traceback anywhere in its output fails the test."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def sim_run(program: str, dataset: Path, *extra: str) -> list[str]:
    """A quick sim run: a narrow search over the small dataset."""
    return ["run", program, "--engine", "sim", "--dataset", str(dataset), "-p", "width=4", *extra]


def rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def spex_process(*argv: str) -> subprocess.Popen[str]:
    """`spex ARGV` as a child process of this checkout, with Ctrl-C delivered as by a terminal
    (a child of a non-interactive shell would otherwise ignore SIGINT)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "runtime.cli.main", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )

"""Fault suite: Ctrl-C (SIGINT) or SIGTERM during a real `spex run` process exits 130 with one
line saying how to resume, no asyncio dump, whole rows only and a run record saying
`interrupted`; over the sglang engine against a `spex serve` process as well."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from fault_support import REBASE, rows, spex_process, write_dataset

from runtime.results import read_results
from runtime.run_record import read_record

WAIT_S = 90.0  # bound on waiting for the first row (a loaded CI machine)


def wait_for_rows(path: Path, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and path.read_text().count("\n") >= 1:
            return
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"no row in {path} within {WAIT_S} s: {process.communicate()}")


def check_interrupted(out: Path, process: subprocess.Popen[str], sig: int) -> None:
    process.send_signal(sig)
    _, err = process.communicate(timeout=WAIT_S)
    assert process.returncode == 130, err
    assert "Traceback" not in err and "Task exception was never retrieved" not in err
    assert err.strip().splitlines()[-1].startswith("spex: interrupted")
    assert "resume with --resume" in err
    assert out.read_text().endswith("\n") and not read_results(out).truncated_last_line
    assert rows(out)
    record = read_record(out)
    assert record is not None and record["status"] == "interrupted"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_a_sim_run_is_a_clean_exit(tmp_path: Path, sig: int) -> None:
    data, out = write_dataset(tmp_path / "d.jsonl"), tmp_path / "r.jsonl"
    argv = ["run", REBASE, "--engine", "sim", "--dataset", str(data), "--repeat", "500"]
    process = spex_process(*argv, "-p", "width=4", "--concurrency", "2", "-o", str(out), "--quiet")
    wait_for_rows(out, process)
    check_interrupted(out, process, sig)


def test_ctrl_c_during_a_run_over_spex_serve_is_a_clean_exit(tmp_path: Path) -> None:
    data, out = write_dataset(tmp_path / "d.jsonl"), tmp_path / "r.jsonl"
    server = spex_process("serve", "--port", "0", "--dataset", str(data))
    try:
        assert server.stdout is not None
        found = re.search(r"http://\S+", server.stdout.readline())
        assert found, server.communicate()
        url = found.group(0)
        argv = ["run", REBASE, "--engine", "sglang", "--policy-url", url, "--reward-url", url]
        process = spex_process(
            *argv,
            "--dataset",
            str(data),
            "--repeat",
            "100",
            "-p",
            "width=4",
            "-o",
            str(out),
            "--quiet",
        )
        wait_for_rows(out, process)
        check_interrupted(out, process, signal.SIGINT)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.communicate(timeout=WAIT_S)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()

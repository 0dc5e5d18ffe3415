"""`--engine` parsing, the unknown-engine message, and that a sim run never imports torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runtime.cli.main import main
from runtime.engines.factory import parse_engine_spec
from spexlang.diagnostics import UserError

REPO = Path(__file__).resolve().parents[1]


def test_engine_spec_keeps_colons_of_the_option() -> None:
    spec = parse_engine_spec("sglang:http://127.0.0.1:30000")
    assert (spec.kind, spec.option) == ("sglang", "http://127.0.0.1:30000")
    sim = parse_engine_spec("sim:h100-7b")
    assert (sim.kind, sim.option, sim.virtual_clock) == ("sim", "h100-7b", True)
    assert parse_engine_spec("local").option == ""


def test_unknown_engine_lists_the_choices() -> None:
    with pytest.raises(UserError) as e:
        parse_engine_spec("vllm:foo")
    assert (
        e.value.message == "unknown engine 'vllm:foo': choose one of sim[:…], local[:…], sglang[:…]"
    )


@pytest.mark.parametrize("command", ["run", "bench"])
def test_unknown_engine_through_the_cli(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program = tmp_path / "p.spx"
    program.write_text("strategy p()\n")
    assert main([command, str(program), "--engine", "gpu"]) == 1
    err = capsys.readouterr().err
    assert "spex: unknown engine 'gpu': choose one of sim[:…], local[:…], sglang[:…]" in err
    assert "Traceback" not in err


def test_resume_needs_an_output_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(tmp_path / "p.spx"), "--engine", "sim", "--resume"]) == 1
    assert "--resume needs -o FILE" in capsys.readouterr().err


def test_missing_program_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(tmp_path / "nope.spx"), "--engine", "sim"]) == 1
    err = capsys.readouterr().err
    assert "program file not found" in err and "Traceback" not in err


def test_building_the_run_parser_does_not_import_torch() -> None:
    # Every engine's flags are added at parser build time; none of that may load torch.
    code = (
        "import sys; from runtime.cli.main import build_parser; "
        "build_parser().parse_args(['run', 'x.spx', '--engine', 'sim']); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"

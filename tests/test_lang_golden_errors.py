"""Golden tests of what a user reads for a broken program: `spex check` output, compared exactly.

Each tests/golden/lang/errors/NAME.spx is a broken program (syntactic or semantic) and NAME.expected
its full rendered diagnostics. Regenerate after an intended wording change with
SPEX_UPDATE_GOLDENS=1 (then read the diff).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from runtime.cli.main import main

ERRORS = Path(__file__).parent / "golden" / "lang" / "errors"
CASES = sorted(p.stem for p in ERRORS.glob("*.spx"))
UPDATE = os.environ.get("SPEX_UPDATE_GOLDENS") == "1"


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 30
    assert sum(c.startswith("syntax_") for c in CASES) >= 10
    assert sum(not c.startswith("syntax_") for c in CASES) >= 20


@pytest.mark.parametrize("name", CASES)
def test_check_output_matches_golden(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ERRORS)
    code = main(["check", f"{name}.spx"])
    out, err = capsys.readouterr()
    expected_path = ERRORS / f"{name}.expected"
    if UPDATE:
        expected_path.write_text(err, encoding="utf-8")
    assert code == 1
    assert out == ""
    assert "Traceback" not in err
    assert err.startswith(f"{name}.spx:") or err.startswith(f"{name}.spx: error")
    assert f"{name}.spx" in err.splitlines()[0]
    assert err == expected_path.read_text(encoding="utf-8")

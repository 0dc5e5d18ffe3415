"""A compiler bug surfaces as a located diagnostic at the program node, never as a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler import lower as lower_module
from compiler import passes as passes_module
from compiler.load import compile_source, read_source
from runtime.cli.main import main
from spexlang import check_search
from spexlang.diagnostics import CompileError

ROOT = Path(__file__).resolve().parent.parent
REBASE = ROOT / "programs" / "rebase.spx"


def boom(*args: object, **kwargs: object) -> object:
    raise KeyError("no such thing")


def test_lowering_failure_is_pinned_to_the_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    original = lower_module.Lowerer.at_least

    def failing_on_budget(
        self: lower_module.Lowerer, node: object, what: str, *a: object
    ) -> object:
        if what == "`budget`":
            raise KeyError("no such thing")
        return original(self, node, what, *a)  # type: ignore[arg-type]

    monkeypatch.setattr(lower_module.Lowerer, "at_least", failing_on_budget)
    with pytest.raises(CompileError) as caught:
        compile_source(read_source(REBASE))
    (d,) = caught.value.diagnostics
    assert d.span is not None and d.span.line > 1  # inside the search block, not line 1
    text = d.render()
    assert "internal compiler error" in text and "KeyError" in text
    assert "expand allocate(softmax" in text  # the source line of the offending node
    assert ".py" not in text and "Traceback" not in text


def test_checker_failure_is_pinned_to_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(check_search.SearchChecker, "_check_stops", boom)
    with pytest.raises(CompileError) as caught:
        compile_source(read_source(REBASE))
    (d,) = caught.value.diagnostics
    assert "search layered {" in d.render()


def test_pass_failure_through_the_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_pass(graph: object) -> list[str]:
        raise RuntimeError("pass exploded")

    monkeypatch.setattr(passes_module, "PIPELINE", (broken_pass,))
    assert main(["graph", str(REBASE)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "rebase.spx:" in err and "internal compiler error" in err and "pass exploded" in err
    assert "Traceback" not in err and "passes.py" not in err

"""`-p name=value`: values parsed as the declared type; wrong values and names are clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler import ir, load_program
from runtime.cli.main import main
from spexlang.checked import ValueType
from spexlang.diagnostics import CompileError, UserError
from spexlang.overrides import parse_value, split_override

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = """strategy t(n: int = 4, temp: float = 0.5, greedy: bool = false, tag: str = "x")
prompt "Q: {question}"
model policy = generate(temperature = temp)
search layered {
  start  children = n
  expand frontier with policy
  leaf   when answered or greedy or depth >= 3
  until  depth >= 3 or tag == "stop"
}
return majority(leaves)
"""


def test_values_take_the_declared_type() -> None:
    graph = load_program(PROGRAM, {"n": "7", "temp": "1", "greedy": "true", "tag": "a b"})
    assert [p.value for p in graph.params] == [7, 1.0, True, "a b"]
    assert isinstance(graph.param("temp").value, float)
    gen = graph.only(ir.OpKind.GENERATE).attrs
    assert isinstance(gen, ir.GenerateAttrs) and gen.sampling.temperature == 1.0


@pytest.mark.parametrize(
    ("name", "value", "type_name"),
    [
        ("n", "abc", "int"),
        ("n", "2.5", "int"),
        ("temp", "warm", "float"),
        ("temp", "nan", "float"),
        ("greedy", "maybe", "bool"),
    ],
)
def test_wrong_values_name_the_parameter_and_its_type(
    name: str, value: str, type_name: str
) -> None:
    with pytest.raises(CompileError) as caught:
        load_program(PROGRAM, {name: value})
    (d,) = caught.value.diagnostics
    assert f"`{name}` is {type_name}" in d.message and repr(value) in d.message
    assert d.span is not None and d.span.line == 1  # at the parameter's declaration


def test_unknown_names_are_errors_listing_the_parameters() -> None:
    with pytest.raises(CompileError) as caught:
        load_program(PROGRAM, {"temperature": "1", "nn": "3"})
    messages = [d.message for d in caught.value.diagnostics]
    assert any("no parameter `temperature`" in m and "n, temp, greedy, tag" in m for m in messages)
    assert any("no parameter `nn`" in m and "did you mean `n`?" in m for m in messages)


def test_parse_value() -> None:
    assert parse_value(" 12 ", ValueType.INT) == 12
    assert parse_value("1e-3", ValueType.FLOAT) == 0.001
    assert parse_value("inf", ValueType.FLOAT) is None
    assert parse_value("False", ValueType.BOOL) is False
    assert parse_value("", ValueType.STR) == ""


def test_split_override() -> None:
    assert split_override("width=32") == ("width", "32")
    assert split_override("tag=a=b") == ("tag", "a=b")
    with pytest.raises(UserError, match="NAME=VALUE"):
        split_override("width")


def test_cli_reports_bad_override(capsys: pytest.CaptureFixture[str]) -> None:
    path = str(ROOT / "programs" / "mcts.spx")
    assert main(["compile", path, "-p", "rollouts=many"]) == 1
    err = capsys.readouterr().err
    assert "-p rollouts=many: parameter `rollouts` is int, and 'many' is not an int" in err
    assert main(["compile", path, "-p", "rollouts"]) == 1
    assert "NAME=VALUE" in capsys.readouterr().err

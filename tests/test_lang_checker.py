"""Semantic checks that golden files do not pin down: warnings-only exit codes, accepted forms."""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler import ir, load_program
from compiler.load import check_source
from runtime.cli.main import main
from spexlang.diagnostics import CompileError, Severity, Source

BASE = """strategy t(width: int = 4, spare: int = 1)
prompt "Q: {question}"
model policy = generate()
model prm = reward()
search layered {
  expand top(width, by = prm) with policy, children = 2
  leaf   when answered or depth >= 5
  until  depth >= 5
}
return best(leaves, by = prm)
"""


def test_warnings_only_exit_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "warn.spx"
    path.write_text(BASE, encoding="utf-8")
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "warning: parameter `spare` is never used" in err
    assert out.strip() == f"{path}: ok (1 warning)"


def test_compile_with_warnings_still_compiles() -> None:
    graph = load_program(BASE, {})
    assert graph.strategy == "t"
    reward = graph.only(ir.OpKind.REWARD).attrs
    assert isinstance(reward, ir.RewardAttrs) and reward.aggregate is ir.Aggregate.LAST


@pytest.mark.parametrize(
    "until",
    [
        "depth >= 5",
        "5 <= depth",
        "count(nodes) > 100",
        "count(leaves) >= width or depth >= 5",
        "depth >= 2 and count(expansions) >= 9",
    ],
)
def test_bounded_until_forms_are_accepted(until: str) -> None:
    text = BASE.replace("leaf   when answered or depth >= 5", "leaf   when answered")
    text = text.replace("until  depth >= 5", f"until  {until}")
    assert not [d for d in check_source(Source("t.spx", text)) if d.severity is Severity.ERROR]


@pytest.mark.parametrize(
    "until",
    [
        "count(leaves) >= width",
        "depth >= 5 or answered",
        "not (depth < 5)",
        "depth >= count(nodes)",
    ],
)
def test_unbounded_until_is_rejected(until: str) -> None:
    text = BASE.replace("leaf   when answered or depth >= 5", "leaf   when answered")
    text = text.replace("until  depth >= 5", f"until  {until}")
    with pytest.raises(CompileError):
        load_program(text, {})


def test_leaf_depth_bound_is_enough_for_a_layered_search() -> None:
    text = BASE.replace("until  depth >= 5", "until  count(leaves) >= width")
    assert load_program(text, {}).strategy == "t"


def test_every_error_is_reported_in_one_run() -> None:
    text = BASE.replace("answered or", "answred or").replace("by = prm)", "by = policy)")
    text = text.replace('"Q: {question}"', '"Q"')
    with pytest.raises(CompileError) as caught:
        load_program(text, {})
    messages = [d.message for d in caught.value.diagnostics if d.severity is Severity.ERROR]
    assert len(messages) == 4  # the prompt, the unknown name, `by = policy` twice
    lines = [d.span.line for d in caught.value.diagnostics if d.span is not None]
    assert lines == sorted(lines)


def test_a_reward_role_may_be_declared_after_its_use() -> None:
    text = BASE.replace("model prm = reward()\n", "") + "model prm = reward(aggregate = min)\n"
    graph = load_program(text, {"spare": "2"})
    reward = graph.only(ir.OpKind.REWARD).attrs
    assert isinstance(reward, ir.RewardAttrs) and reward.aggregate is ir.Aggregate.MIN


def test_the_reference_example_compiles() -> None:
    doc = (Path(__file__).resolve().parent.parent / "docs" / "language.md").read_text(
        encoding="utf-8"
    )
    example = doc.split("```")[1]
    graph = load_program(example, {})
    assert graph.strategy == "rebase"


def test_a_positional_argument_may_be_named() -> None:
    named = load_program(BASE.replace("top(width, by = prm)", "top(k = width, by = prm)"), {})
    plain = load_program(BASE, {})
    assert named.only(ir.OpKind.SELECT).attrs == plain.only(ir.OpKind.SELECT).attrs


def test_a_missing_positional_argument_is_named_with_both_spellings() -> None:
    text = BASE.replace("top(width, by = prm)", "top(by = prm)")
    with pytest.raises(CompileError) as caught:
        load_program(text, {})
    assert "`top` needs `k`: its first argument, or `k = ...`" in str(caught.value)
    twice = BASE.replace("top(width, by = prm)", "top(width, k = 2, by = prm)")
    with pytest.raises(CompileError, match="`k` is given twice"):
        load_program(twice, {})


def test_a_run_time_error_is_printed_as_a_located_diagnostic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.spx"
    path.write_text(BASE.replace("top(width, by = prm)", "top(width - depth * 2, by = prm)"))
    assert main(["run", str(path), "--engine", "sim", "--limit", "2", "--quiet"]) == 1
    lines = capsys.readouterr().err.splitlines()
    at = lines.index("spex: 2 queries failed at:")
    assert lines[at + 1].startswith(f"{path}:6:14: error: the K of top(K, ...) must be at least 1")
    assert lines[at + 3].strip() == "^" * len("width - depth * 2")

"""Whatever text arrives, the compiler answers with a graph or located diagnostics, nothing else.

Random bytes and shipped programs mutated at the character and token level go through the whole
pipeline (parse, check, lower, passes, lint). Every failure must be a CompileError whose
diagnostics all carry a position inside the text, and none may be an internal compiler error.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.lint import lint
from compiler.load import compile_source
from spexlang.diagnostics import CompileError, Source

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "programs").glob("*.spx"))]
VOCABULARY = sorted(
    {t for text in TEXTS for t in re.findall(r"\w+|\S", text)}
    | {"{", "}", "(", ")", "[", "]", "/", '"', "\\", "==", "<", "-", "#", "\n", "@", "1e999"}
)
PROPERTY = settings(
    max_examples=120, deadline=1000, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def assert_compiles_or_reports(text: str) -> None:
    source = Source("fuzz.spx", text)
    try:
        compilation = compile_source(source)
    except CompileError as e:
        assert e.diagnostics, "a CompileError carries at least one diagnostic"
        lines = max(1, len(text.splitlines()) + 1)
        for d in e.diagnostics:
            assert d.span is not None, d.render()
            assert 1 <= d.span.line <= lines, d.render()
            assert d.span.column >= 1, d.render()
            assert "internal compiler error" not in d.message, d.render()
            assert "Traceback" not in d.render()
        return
    assert lint(compilation.graph) == []


@PROPERTY
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    assert_compiles_or_reports(data.decode("utf-8", errors="replace"))


@st.composite
def char_mutants(draw: st.DrawFn) -> str:
    text = list(draw(st.sampled_from(TEXTS)))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text) - 1))
        action = draw(st.sampled_from(["delete", "insert", "swap"]))
        if action == "delete":
            del text[i]
        elif action == "insert":
            text.insert(i, draw(st.sampled_from(list('{}()[]/"\\=<>-+*#,.:\n 0a_'))))
        else:
            j = draw(st.integers(0, len(text) - 1))
            text[i], text[j] = text[j], text[i]
    return "".join(text)


@st.composite
def token_mutants(draw: st.DrawFn) -> str:
    tokens = re.findall(r"\s+|\w+|\S", draw(st.sampled_from(TEXTS)))
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(tokens) - 1))
        action = draw(st.sampled_from(["delete", "insert", "swap", "duplicate"]))
        if action == "delete":
            del tokens[i]
        elif action == "insert":
            tokens.insert(i, " " + draw(st.sampled_from(VOCABULARY)) + " ")
        elif action == "duplicate":
            tokens.insert(i, tokens[i])
        else:
            j = draw(st.integers(0, len(tokens) - 1))
            tokens[i], tokens[j] = tokens[j], tokens[i]
    return "".join(tokens)


@PROPERTY
@given(char_mutants())
def test_character_mutations_of_shipped_programs(text: str) -> None:
    assert_compiles_or_reports(text)


@PROPERTY
@given(token_mutants())
def test_token_mutations_of_shipped_programs(text: str) -> None:
    assert_compiles_or_reports(text)


def test_deeply_nested_expression_is_reported_not_crashed() -> None:
    text = TEXTS[0].replace(
        "depth >= max_depth\n}", "depth >= " + "(" * 3000 + "1" + ")" * 3000 + "\n}"
    )
    assert_compiles_or_reports(text)

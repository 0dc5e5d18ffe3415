"""The parser: AST equality ignores spans, spans point at the source, every alias has a method."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from spexlang import ast
from spexlang.diagnostics import CompileError, Span
from spexlang.parser import parse


def wrap(search_body: str, extra: str = "") -> str:
    return (
        "strategy t(w: int = 4)\n"
        'prompt "Q: {question}"\n'
        f"{extra}"
        "model policy = generate()\n"
        f"search layered {{\n{search_body}\n}}\n"
        "return majority(leaves)\n"
    )


def clauses(body: str) -> tuple[ast.Clause, ...]:
    program = parse(wrap(body), "t.spx")
    search = next(d for d in program.declarations if isinstance(d, ast.SearchDecl))
    return search.clauses


def test_parsed_fragment_equals_hand_built_node() -> None:
    (expand,) = clauses("expand top(w // 2, by = prm) per subtree with policy, children = 3")
    expected = ast.ExpandClause(
        selection=ast.Selection(
            stages=(
                ast.CallExpr(
                    ast.Name("top"),
                    (
                        ast.Argument(None, ast.BinaryOp("//", ast.Var("w"), ast.NumberLit(2))),
                        ast.Argument(ast.Name("by"), ast.Var("prm")),
                    ),
                ),
            ),
            per_subtree=True,
        ),
        role=ast.Name("policy"),
        arguments=(ast.Argument(ast.Name("children"), ast.NumberLit(3)),),
    )
    assert expand == expected


def test_precedence_and_associativity() -> None:
    (until,) = clauses("until not a or b and c >= 1 + 2 * -3 - 4")
    assert isinstance(until, ast.UntilClause)
    a, b, c = ast.Var("a"), ast.Var("b"), ast.Var("c")
    arithmetic = ast.BinaryOp(
        "-",
        ast.BinaryOp(
            "+",
            ast.NumberLit(1),
            ast.BinaryOp("*", ast.NumberLit(2), ast.UnaryOp("-", ast.NumberLit(3))),
        ),
        ast.NumberLit(4),
    )
    expected = ast.BinaryOp(
        "or",
        ast.UnaryOp("not", a),
        ast.BinaryOp("and", b, ast.BinaryOp(">=", c, arithmetic)),
    )
    assert until.condition == expected


def test_literals_escapes_regex_and_lists() -> None:
    program = parse(
        wrap("until depth >= 1e1", 'answer /a\\/b\\s(.+)/\nstep "\\n\\t\\\\\\""\n'), "t.spx"
    )
    answer = next(d for d in program.declarations if isinstance(d, ast.AnswerDecl))
    step = next(d for d in program.declarations if isinstance(d, ast.StepDecl))
    assert answer.pattern == "a/b\\s(.+)"
    assert step.delimiter.value == '\n\t\\"'
    (until,) = clauses("until depth >= 1e1")
    assert isinstance(until, ast.UntilClause)
    assert until.condition == ast.BinaryOp(">=", ast.Var("depth"), ast.NumberLit(10.0))
    model = parse('strategy t()\nmodel p = generate(stop = ["a", "b",])', "t.spx").declarations[0]
    assert isinstance(model, ast.ModelDecl)
    assert model.arguments[0].value == ast.ListLit((ast.StringLit("a"), ast.StringLit("b")))


def test_spans_are_one_based_and_end_exclusive() -> None:
    (leaf,) = clauses("  leaf when answered")
    assert isinstance(leaf, ast.LeafClause)
    assert leaf.span == Span(5, 3, 5, 21)
    assert leaf.condition.span == Span(5, 13, 5, 21)
    assert leaf != ast.LeafClause(ast.Var("tokens"))
    assert leaf == ast.LeafClause(ast.Var("answered"), Span(9, 9, 9, 9))


def test_keywords_are_contextual() -> None:
    program = parse(
        "strategy t(step: int = 1, by: int = 2)\n"
        "model mean = reward(aggregate = mean)\n"
        "search rollout { backup mean mean  order by by }\n",
        "t.spx",
    )
    assert [p.name.text for p in program.header.params] == ["step", "by"]
    search = program.declarations[1]
    assert isinstance(search, ast.SearchDecl)
    assert search.clauses == (
        ast.BackupClause(ast.Name("mean"), "mean"),
        ast.OrderClause(ast.Name("by")),
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("strategy t() search layered { until }", "expected an expression, but found '}'"),
        (
            "strategy t() search layered {\n leaf when answered\n",
            "expected '}' to close the search block",
        ),
        ("strategy t() prompt 5", "expected the prompt template as a string"),
        ("strategy t(a int = 1)", "expected ':' and the parameter's type, but found 'int'"),
        ('strategy t() prompt "abc', "unterminated string"),
        ("", "the program is empty"),
    ],
)
def test_syntax_errors_are_in_words(text: str, message: str) -> None:
    with pytest.raises(CompileError) as caught:
        parse(text, "t.spx")
    (diagnostic,) = caught.value.diagnostics
    assert message in diagnostic.message
    assert diagnostic.span is not None
    assert not re.search(r"\b[A-Z]{3,}\b", diagnostic.message), "no terminal names like RBRACE"


def test_every_grammar_alias_has_a_transformer_method() -> None:
    from spexlang.parser import _ToAst

    grammar = resources.files("spexlang").joinpath("spx.lark").read_text(encoding="utf-8")
    aliases = set(re.findall(r"->\s*(\w+)", grammar))
    assert aliases
    for alias in aliases:
        assert callable(getattr(_ToAst, alias, None)), alias


def test_unmapped_rule_fails_loudly() -> None:
    from lark import Tree

    from spexlang.parser import _ToAst

    with pytest.raises(Exception, match="no transformer method"):
        _ToAst().transform(Tree("no_such_rule", []))

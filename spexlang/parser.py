"""Parsing .spx text into the syntax tree (spexlang/ast.py).

The grammar lives in spexlang/spx.lark and is loaded once per process as package data. The
transformer has one method per grammar alias and its default case raises, so a grammar
alternative without a method fails loudly instead of leaking a raw parse tree. Syntax errors
become located `Diagnostic`s worded for people (spexlang/syntax_errors.py).
"""

from __future__ import annotations

import functools
import math
from importlib import resources
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedInput, VisitError

from spexlang import ast
from spexlang.diagnostics import CompileError, Diagnostic, Severity, Source, Span
from spexlang.syntax_errors import describe_syntax_error

_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"'}


class LocatedSyntaxError(Exception):
    """A token the grammar accepts but whose text is still wrong (a bad escape, a huge number)."""

    def __init__(self, message: str, span: Span) -> None:
        super().__init__(message)
        self.message = message
        self.span = span


@functools.cache
def spx_parser() -> Lark:
    """The LALR parser for .spx, built once per process from the packaged grammar."""
    grammar = resources.files("spexlang").joinpath("spx.lark").read_text(encoding="utf-8")
    return Lark(
        grammar,
        start="program",
        parser="lalr",
        lexer="contextual",
        propagate_positions=True,
        maybe_placeholders=True,
    )


def token_span(token: Token) -> Span:
    return Span(token.line or 0, token.column or 0, token.end_line or 0, token.end_column or 0)


def _meta_span(meta: Any) -> Span:
    if getattr(meta, "empty", True):
        return ast.NO_SPAN
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def _name(token: Token) -> ast.Name:
    return ast.Name(str(token), token_span(token))


def _decode_string(token: Token) -> str:
    raw = str(token)[1:-1]
    out: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = raw[i + 1]  # the STRING terminal guarantees a character after a backslash
        if nxt not in _ESCAPES:
            col = (token.column or 0) + 1 + i
            span = Span(token.line or 0, col, token.line or 0, col + 2)
            raise LocatedSyntaxError(
                f"unknown escape '\\{nxt}' in a string (the escapes are \\n \\t \\\\ \\\")", span
            )
        out.append(_ESCAPES[nxt])
        i += 2
    return "".join(out)


def _number(token: Token) -> int | float:
    text = str(token)
    if text.isdigit():
        return int(text)
    value = float(text)
    if not math.isfinite(value):
        raise LocatedSyntaxError(f"the number {text} is too large", token_span(token))
    return value


def _arguments(args: tuple[ast.Argument, ...] | None) -> tuple[ast.Argument, ...]:
    return args if args is not None else ()


@v_args(meta=True)
class _ToAst(Transformer[Token, ast.Program]):
    """One method per alias in spx.lark; anything else is a grammar/transformer mismatch."""

    def __default__(self, data: str, children: list[Any], meta: Any) -> Any:
        raise NotImplementedError(f"no transformer method for grammar rule {data!r}")

    # -- program and header
    def program(self, meta: Any, c: list[Any]) -> ast.Program:
        return ast.Program(c[0], tuple(c[1:]), _meta_span(meta))

    def header(self, meta: Any, c: list[Any]) -> ast.Header:
        params: tuple[ast.ParamDecl, ...] = c[1] if c[1] is not None else ()
        return ast.Header(_name(c[0]), params, _meta_span(meta))

    def parameters(self, meta: Any, c: list[Any]) -> tuple[ast.ParamDecl, ...]:
        return tuple(p for p in c if p is not None)

    def parameter(self, meta: Any, c: list[Any]) -> ast.ParamDecl:
        return ast.ParamDecl(_name(c[0]), _name(c[1]), c[2], _meta_span(meta))

    # -- declarations
    def prompt_decl(self, meta: Any, c: list[Any]) -> ast.PromptDecl:
        return ast.PromptDecl(self.string(meta, c), _meta_span(meta))

    def step_decl(self, meta: Any, c: list[Any]) -> ast.StepDecl:
        return ast.StepDecl(self.string(meta, c), _meta_span(meta))

    def answer_decl(self, meta: Any, c: list[Any]) -> ast.AnswerDecl:
        pattern = str(c[0])[1:-1].replace("\\/", "/")
        return ast.AnswerDecl(pattern, _meta_span(meta))

    def equivalence_decl(self, meta: Any, c: list[Any]) -> ast.EquivalenceDecl:
        return ast.EquivalenceDecl(_name(c[0]), _meta_span(meta))

    def model_decl(self, meta: Any, c: list[Any]) -> ast.ModelDecl:
        return ast.ModelDecl(_name(c[0]), _name(c[1]), _arguments(c[2]), _meta_span(meta))

    def search_decl(self, meta: Any, c: list[Any]) -> ast.SearchDecl:
        return ast.SearchDecl(_name(c[0]), tuple(c[1:]), _meta_span(meta))

    def return_decl(self, meta: Any, c: list[Any]) -> ast.ReturnDecl:
        return ast.ReturnDecl(_name(c[0]), _arguments(c[1]), _meta_span(meta))

    # -- search clauses
    def start_clause(self, meta: Any, c: list[Any]) -> ast.StartClause:
        return ast.StartClause(c[0], _meta_span(meta))

    def expand_clause(self, meta: Any, c: list[Any]) -> ast.ExpandClause:
        return ast.ExpandClause(c[0], _name(c[1]), tuple(c[2:]), _meta_span(meta))

    def leaf_clause(self, meta: Any, c: list[Any]) -> ast.LeafClause:
        return ast.LeafClause(c[0], _meta_span(meta))

    def until_clause(self, meta: Any, c: list[Any]) -> ast.UntilClause:
        return ast.UntilClause(c[0], _meta_span(meta))

    def select_clause(self, meta: Any, c: list[Any]) -> ast.SelectClause:
        return ast.SelectClause(c[0], _meta_span(meta))

    def backup_leaf_clause(self, meta: Any, c: list[Any]) -> ast.BackupClause:
        return ast.BackupClause(_name(c[0]), "leaf", _meta_span(meta))

    def backup_mean_clause(self, meta: Any, c: list[Any]) -> ast.BackupClause:
        return ast.BackupClause(_name(c[0]), "mean", _meta_span(meta))

    def order_clause(self, meta: Any, c: list[Any]) -> ast.OrderClause:
        return ast.OrderClause(_name(c[0]), _meta_span(meta))

    def prune_clause(self, meta: Any, c: list[Any]) -> ast.PruneClause:
        return ast.PruneClause(c[0], _meta_span(meta))

    def selection(self, meta: Any, c: list[Any]) -> ast.Selection:
        return ast.Selection(c[0], False, _meta_span(meta))

    def subtree_selection(self, meta: Any, c: list[Any]) -> ast.Selection:
        return ast.Selection(c[0], True, _meta_span(meta))

    def stages(self, meta: Any, c: list[Any]) -> tuple[ast.Expression, ...]:
        return tuple(c)

    # -- arguments
    def arguments(self, meta: Any, c: list[Any]) -> tuple[ast.Argument, ...]:
        return tuple(a for a in c if a is not None)

    def positional_argument(self, meta: Any, c: list[Any]) -> ast.Argument:
        return ast.Argument(None, c[0], _meta_span(meta))

    def keyword_argument(self, meta: Any, c: list[Any]) -> ast.Argument:
        return ast.Argument(_name(c[0]), c[1], _meta_span(meta))

    # -- expressions
    def binary(self, meta: Any, c: list[Any]) -> ast.BinaryOp:
        return ast.BinaryOp(str(c[1]), c[0], c[2], _meta_span(meta))

    def unary(self, meta: Any, c: list[Any]) -> ast.UnaryOp:
        return ast.UnaryOp(str(c[0]), c[1], _meta_span(meta))

    def number(self, meta: Any, c: list[Any]) -> ast.NumberLit:
        return ast.NumberLit(_number(c[0]), _meta_span(meta))

    def string(self, meta: Any, c: list[Any]) -> ast.StringLit:
        return ast.StringLit(_decode_string(c[0]), token_span(c[0]))

    def true(self, meta: Any, c: list[Any]) -> ast.BoolLit:
        return ast.BoolLit(True, _meta_span(meta))

    def false(self, meta: Any, c: list[Any]) -> ast.BoolLit:
        return ast.BoolLit(False, _meta_span(meta))

    def name(self, meta: Any, c: list[Any]) -> ast.Var:
        return ast.Var(str(c[0]), _meta_span(meta))

    def call(self, meta: Any, c: list[Any]) -> ast.CallExpr:
        return ast.CallExpr(_name(c[0]), _arguments(c[1]), _meta_span(meta))

    def list_literal(self, meta: Any, c: list[Any]) -> ast.ListLit:
        return ast.ListLit(tuple(x for x in c if x is not None), _meta_span(meta))

    def group(self, meta: Any, c: list[Any]) -> ast.Expression:
        inner: ast.Expression = c[0]
        return inner


def parse(text: str, name: str = "<string>") -> ast.Program:
    """Parse one program; raises `CompileError` with a located, worded diagnostic on bad syntax."""
    source = Source(name, text)
    try:
        tree: Tree[Token] = spx_parser().parse(text)
    except UnexpectedInput as e:
        raise CompileError([describe_syntax_error(e, source)]) from None
    try:
        return _ToAst().transform(tree)
    except VisitError as e:
        if isinstance(e.orig_exc, LocatedSyntaxError):
            err = e.orig_exc
            raise CompileError(
                [Diagnostic(Severity.ERROR, err.message, err.span, source)]
            ) from None
        raise e.orig_exc from None

"""Semantic checks of a parsed program: every static error and warning of docs/language.md.

`check` walks the declarations, resolves names, types every expression and returns the
`CheckedProgram` the compiler lowers, or None when it found errors. It reports everything it
finds, in source order: unknown and duplicate names, type errors, missing or duplicated
declarations, a prompt without {question}, a regex that does not compile, a search that may never
stop, a reward read with no reward model, and (as warnings) parameters and models never used.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from spexlang import ast
from spexlang.check_expr import ExprChecker
from spexlang.check_models import MODEL_KINDS, ModelChecker
from spexlang.check_search import SearchChecker
from spexlang.checked import (
    CheckedAnswer,
    CheckedModel,
    CheckedParam,
    CheckedProgram,
    CheckedSearch,
    Value,
    ValueType,
)
from spexlang.diagnostics import Diagnostic, Source, Span
from spexlang.internal_errors import pinned_to
from spexlang.names import referenced_names
from spexlang.scope import (
    NODE_NAMES,
    DeclaredModel,
    DeclaredParam,
    Reporter,
    Scope,
    suggestion,
)

DEFAULT_STEP = "\n\n"
DEFAULT_ANSWER = r"The answer is:?\s*(.+)"
DEFAULT_EQUIVALENCE = "math"
EQUIVALENCES = ("exact", "numeric", "math")
ANSWER_METHODS = ("vote", "best", "majority")
_DECLARATION_NAME: Mapping[type, str] = {
    ast.PromptDecl: "prompt",
    ast.StepDecl: "step",
    ast.AnswerDecl: "answer",
    ast.EquivalenceDecl: "equivalence",
    ast.SearchDecl: "search",
    ast.ReturnDecl: "return",
}
_REQUIRED = {
    "prompt": "prompt \"Solve step by step. End with 'The answer is: X'.\\n\\n{question}\\n\"",
    "search": "search layered { ... }",
    "return": "return vote(leaves, weight = prm)",
}


def _default_value(expr: ast.Expression) -> Value | None:
    """The value of a literal default (`-3` included), or None if it is not a literal."""
    if isinstance(expr, ast.NumberLit | ast.StringLit | ast.BoolLit):
        return expr.value
    if isinstance(expr, ast.UnaryOp) and expr.op == "-" and isinstance(expr.operand, ast.NumberLit):
        return -expr.operand.value
    return None


def _fits(value: Value, type_: ValueType) -> bool:
    if type_ is ValueType.BOOL or type_ is ValueType.STR:
        return isinstance(value, bool if type_ is ValueType.BOOL else str)
    if isinstance(value, bool) or isinstance(value, str):
        return False
    return type_ is ValueType.FLOAT or isinstance(value, int)


_ARTICLE = {
    ValueType.INT: "an int",
    ValueType.FLOAT: "a float",
    ValueType.BOOL: "a bool",
    ValueType.STR: "a str",
}


def _type_name(value: Value) -> str:
    types = {bool: ValueType.BOOL, int: ValueType.INT, float: ValueType.FLOAT, str: ValueType.STR}
    return _ARTICLE[types[type(value)]]


class Checker:
    """One check of one program; see `check`."""

    def __init__(self, source: Source) -> None:
        self.reporter = Reporter(source)
        self.scope = Scope()
        self.exprs = ExprChecker(self.scope, self.reporter)

    def run(self, program: ast.Program) -> CheckedProgram | None:
        with pinned_to(program.header):
            params = self._params(program.header)
        singles = self._declarations(program)
        models = self._models(program)
        prompt = self._prompt(singles.get("prompt"))
        step = self._step(singles.get("step"))
        pattern = self._answer_pattern(singles.get("answer"))
        equivalence = self._equivalence(singles.get("equivalence"))
        search_decl = singles.get("search")
        search: CheckedSearch | None = None
        if isinstance(search_decl, ast.SearchDecl):
            with pinned_to(search_decl):
                search = SearchChecker(self.exprs).check(search_decl)
        return_decl = singles.get("return")
        answer: CheckedAnswer | None = None
        if isinstance(return_decl, ast.ReturnDecl):
            with pinned_to(return_decl):
                answer = self._return(return_decl)
        self._missing(program, singles)
        self._unused(program, models)
        if self.reporter.has_errors or search is None or answer is None or prompt is None:
            return None
        return CheckedProgram(
            source=self.reporter.source,
            program=program,
            name=program.header.name.text,
            params=params,
            prompt=prompt,
            step=step,
            answer_pattern=pattern,
            equivalence=equivalence,
            models=models,
            search=search,
            answer=answer,
        )

    # -- parameters

    def _params(self, header: ast.Header) -> tuple[CheckedParam, ...]:
        out: list[CheckedParam] = []
        for decl in header.params:
            name = decl.name.text
            if name in self.scope.params:
                first = self.scope.params[name].decl.span
                self.reporter.error(
                    f"duplicate parameter `{name}` (the first is at line {first.line})", decl.name
                )
                continue
            if name in NODE_NAMES:
                self.reporter.error(
                    f"a parameter cannot be called `{name}`: that name is built in", decl.name
                )
                continue
            type_ = next((t for t in ValueType if t.value == decl.type.text), None)
            self.scope.params[name] = DeclaredParam(type_, decl)
            if type_ is None:
                self.reporter.error(
                    f"unknown type `{decl.type.text}` for `{name}`; the types are int, float, "
                    f"bool and str{suggestion(decl.type.text, [t.value for t in ValueType])}",
                    decl.type,
                )
                continue
            value = _default_value(decl.default)
            if value is None:
                self.reporter.error(
                    f"the default of `{name}` must be a literal {type_.value} value", decl.default
                )
                continue
            if not _fits(value, type_):
                self.reporter.error(
                    f"the default of `{name}` must be {_ARTICLE[type_]}, but it is "
                    f"{_type_name(value)}",
                    decl.default,
                )
                continue
            if type_ is ValueType.FLOAT:
                value = float(value)
            out.append(CheckedParam(name, type_, value, decl))
        return tuple(out)

    # -- declarations

    def _declarations(self, program: ast.Program) -> dict[str, ast.Declaration]:
        singles: dict[str, ast.Declaration] = {}
        for decl in program.declarations:
            if isinstance(decl, ast.ModelDecl):
                continue
            kind = _DECLARATION_NAME[type(decl)]
            if kind in singles:
                first = singles[kind].span
                self.reporter.error(
                    f"duplicate `{kind}` declaration (the first is at line {first.line})", decl
                )
            else:
                singles[kind] = decl
        return singles

    def _missing(self, program: ast.Program, singles: Mapping[str, ast.Declaration]) -> None:
        for kind, example in _REQUIRED.items():
            if kind not in singles:
                self.reporter.error(
                    f"the program has no `{kind}` declaration; add one, e.g. `{example}`",
                    program.header.name,
                )
        if not self.scope.generate_models() and not any(
            m.kind == "" for m in self.scope.models.values()
        ):
            self.reporter.error(
                "the program declares no generate model; add one, e.g. "
                "`model policy = generate(temperature = 1.0)`",
                program.header.name,
            )

    def _prompt(self, decl: ast.Declaration | None) -> str | None:
        if not isinstance(decl, ast.PromptDecl):
            return None
        template = decl.template.value
        if "{question}" not in template:
            self.reporter.error(
                "the prompt must contain {question}, where the query's question goes",
                decl.template,
            )
        return template

    def _step(self, decl: ast.Declaration | None) -> str:
        if not isinstance(decl, ast.StepDecl):
            return DEFAULT_STEP
        if not decl.delimiter.value:
            self.reporter.error("the step delimiter cannot be empty", decl.delimiter)
        return decl.delimiter.value

    def _answer_pattern(self, decl: ast.Declaration | None) -> str:
        if not isinstance(decl, ast.AnswerDecl):
            return DEFAULT_ANSWER
        try:
            re.compile(decl.pattern)
        except re.error as e:
            span = decl.span
            # Point into the regex: after `answer `, its opening slash, then e.pos characters.
            start = span.end_column - len(decl.pattern) - 1 + (e.pos or 0)
            start = max(span.column, min(start, span.end_column - 1))
            where = Span(span.line, start, span.line, start + 1)
            self.reporter.error(f"the answer regex does not compile: {e.msg}", where)
        return decl.pattern

    def _equivalence(self, decl: ast.Declaration | None) -> str:
        if not isinstance(decl, ast.EquivalenceDecl):
            return DEFAULT_EQUIVALENCE
        kind = decl.kind.text
        if kind not in EQUIVALENCES:
            self.reporter.error(
                f"unknown equivalence `{kind}`; the equivalences are exact, numeric and math"
                f"{suggestion(kind, EQUIVALENCES)}",
                decl.kind,
            )
        return kind

    # -- models

    def _models(self, program: ast.Program) -> tuple[CheckedModel, ...]:
        decls = [d for d in program.declarations if isinstance(d, ast.ModelDecl)]
        for decl in decls:  # register first so the search may name a model declared after it
            name = decl.name.text
            kind = decl.kind.text if decl.kind.text in MODEL_KINDS else ""
            if name in self.scope.models:
                first = self.scope.models[name].decl.span
                self.reporter.error(
                    f"duplicate model `{name}` (the first is at line {first.line})", decl.name
                )
            elif name in self.scope.params:
                self.reporter.error(
                    f"`{name}` is already a parameter; a model needs a name of its own", decl.name
                )
            elif name in NODE_NAMES:
                self.reporter.error(
                    f"a model cannot be called `{name}`: that name is built in", decl.name
                )
            else:
                self.scope.models[name] = DeclaredModel(kind, decl)
        out: list[CheckedModel] = []
        for decl in decls:
            if self.scope.models.get(decl.name.text, None) is None:
                continue
            if self.scope.models[decl.name.text].decl is not decl:
                continue
            with pinned_to(decl):
                model = ModelChecker(self.exprs).check(decl)
            if model is not None:
                out.append(model)
        return tuple(out)

    # -- return

    def _return(self, decl: ast.ReturnDecl) -> CheckedAnswer | None:
        method = decl.method.text
        if method not in ANSWER_METHODS:
            self.reporter.error(
                f"unknown answer method `{method}`; write `vote(leaves, weight = R)`, "
                f"`best(leaves, by = R)` or `majority(leaves)`{suggestion(method, ANSWER_METHODS)}",
                decl.method,
            )
            return None
        positional = [a for a in decl.arguments if a.keyword is None]
        first = positional[0].value if len(positional) == 1 else None
        if not (isinstance(first, ast.Var) and first.name == "leaves"):
            self.reporter.error(
                f"the answer is taken over the leaves: write `{method}(leaves"
                f"{'' if method == 'majority' else ', ...'})`",
                decl,
            )
            return None
        wanted = {"vote": "weight", "best": "by", "majority": ""}[method]
        role: str | None = None
        for arg in decl.arguments:
            if arg.keyword is None:
                continue
            if arg.keyword.text != wanted:
                allowed = f"only `{wanted} = R`" if wanted else "no named arguments"
                self.reporter.error(f"`{method}` takes {allowed}", arg.keyword)
                return None
            role = self.exprs.reward_role(arg.value, f"`{wanted}`")
            if role is None:
                return None
        if wanted and role is None:
            hint = "; for an unweighted vote write `majority(leaves)`" if method == "vote" else ""
            self.reporter.error(f"`{method}` needs `{wanted} = R` (a reward model){hint}", decl)
            return None
        return CheckedAnswer(method, role, decl)

    # -- warnings

    def _unused(self, program: ast.Program, models: tuple[CheckedModel, ...]) -> None:
        used = referenced_names(program)
        for decl in program.header.params:
            name = decl.name.text
            if self.scope.params.get(name) is not None and name not in used:
                if self.scope.params[name].decl is decl:
                    self.reporter.warning(f"parameter `{name}` is never used", decl.name)
        for model in models:
            if model.name not in used:
                self.reporter.warning(
                    f"model `{model.name}` is never used; it will not be called", model.decl.name
                )


def check(program: ast.Program, source: Source) -> tuple[CheckedProgram | None, list[Diagnostic]]:
    """Check `program`; the checked program (None if there were errors) and every diagnostic."""
    checker = Checker(source)
    checked = checker.run(program)
    diagnostics = sorted(
        checker.reporter.diagnostics,
        key=lambda d: (d.span.line, d.span.column) if d.span is not None else (0, 0),
    )
    return checked, diagnostics

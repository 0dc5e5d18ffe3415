"""Checking the `search` block: its clauses, its selection, and that it must stop.

Each search kind takes a fixed set of clauses. The selection is resolved, stage by stage, to rules
of the registry in compiler/rules.py (spexlang/check_selection.py). A search must provably end:
`until` has to bound something that grows every iteration (the layer depth, count(nodes),
count(rollouts), ...) by a value known before the run.
"""

from __future__ import annotations

from collections.abc import Mapping

from spexlang import ast
from spexlang.check_expr import LEAF, UNTIL, ExprChecker, rule_context
from spexlang.check_selection import SelectionChecker, selections_for
from spexlang.checked import CheckedRule, CheckedSearch, ValueType
from spexlang.diagnostics import Severity
from spexlang.scope import suggestion

KINDS = ("layered", "best_first", "rollout", "depth_first")
_CLAUSE_NAME: Mapping[type, str] = {
    ast.StartClause: "start",
    ast.ExpandClause: "expand",
    ast.LeafClause: "leaf",
    ast.UntilClause: "until",
    ast.SelectClause: "select",
    ast.BackupClause: "backup",
    ast.OrderClause: "order",
    ast.PruneClause: "prune",
}
_ALLOWED = {
    "layered": ("start", "expand", "leaf", "until"),
    "best_first": ("expand", "leaf", "until"),
    "rollout": ("select", "expand", "backup", "leaf", "until"),
    "depth_first": ("expand", "order", "prune", "leaf", "until"),
}
_OPTIONAL = frozenset({"start", "prune"})
_EXAMPLE = {
    "expand": "expand frontier with policy",
    "leaf": "leaf when answered or depth >= 20",
    "until": "until depth >= 20",
    "select": "select uct(2.0)",
    "backup": "backup prm of leaf",
    "order": "order by prm",
}
# Quantities that grow every iteration of each search kind, so bounding one ends the search.
_GROWING_COUNTS = {
    "layered": frozenset({"nodes", "expansions"}),
    "best_first": frozenset({"nodes", "expansions"}),
    "rollout": frozenset({"rollouts"}),
    "depth_first": frozenset({"nodes", "expansions"}),
}
# Kinds whose `expand` names a selection (the others pick nodes through their own clauses).
_SELECTING = frozenset({"layered", "best_first"})


def _and(words: tuple[str, ...]) -> str:
    return ", ".join(words[:-1]) + " and " + words[-1]


class SearchChecker:
    """Checks one `search` declaration; `check` returns None when it reported errors."""

    def __init__(self, exprs: ExprChecker) -> None:
        self.exprs = exprs
        self.reporter = exprs.reporter

    def check(self, decl: ast.SearchDecl) -> CheckedSearch | None:
        kind = decl.kind.text
        if kind not in KINDS:
            self.reporter.error(
                f"unknown search kind `{kind}`; the kinds are {_and(KINDS)}"
                f"{suggestion(kind, KINDS)}",
                decl.kind,
            )
            return None
        errors_before = self._errors()
        clauses = self._clauses(decl, kind)
        # Check every clause that is there, even when others are missing or misplaced, so one
        # run reports as much as it can.
        expand = clauses.get("expand")
        leaf = clauses.get("leaf")
        until = clauses.get("until")
        backup = clauses.get("backup")
        assert expand is None or isinstance(expand, ast.ExpandClause)
        assert leaf is None or isinstance(leaf, ast.LeafClause)
        assert until is None or isinstance(until, ast.UntilClause)
        assert backup is None or isinstance(backup, ast.BackupClause)
        role = stages = None
        children: ast.Expression | None = None
        root_children = self._start(clauses.get("start"))
        if expand is not None:
            role = self._generate_role(expand.role)
            children = self._children(expand)
            stages = self._stages(kind, expand, clauses, children)
        leaf_ok = leaf is not None and self.exprs.expect(leaf.condition, LEAF, ValueType.BOOL)
        until_ok = until is not None and self.exprs.expect(until.condition, UNTIL, ValueType.BOOL)
        if leaf_ok and until_ok:
            assert leaf is not None and until is not None
            self._check_stops(kind, leaf, until)
        if self._errors() > errors_before or role is None or stages is None:
            return None
        assert leaf is not None and until is not None and expand is not None
        if SelectionChecker.allocates(stages[-1]):
            children = None
        elif children is None:
            children = ast.NumberLit(1, expand.span)
        return CheckedSearch(
            kind,
            decl,
            role,
            root_children,
            stages,
            children,
            leaf.condition,
            until.condition,
            backup,
        )

    def _errors(self) -> int:
        return sum(d.severity is Severity.ERROR for d in self.reporter.diagnostics)

    # -- clauses

    def _clauses(self, decl: ast.SearchDecl, kind: str) -> dict[str, ast.Clause]:
        """The clauses by name, reporting misplaced, duplicated and missing ones."""
        found: dict[str, ast.Clause] = {}
        allowed = _ALLOWED[kind]
        for clause in decl.clauses:
            name = _CLAUSE_NAME[type(clause)]
            if name not in allowed:
                self.reporter.error(
                    f"`{name}` is not part of a {kind} search (a {kind} search has "
                    f"{_and(allowed)})",
                    clause,
                )
            elif name in found:
                first = found[name].span
                self.reporter.error(
                    f"duplicate `{name}` clause (the first is at line {first.line})", clause
                )
            else:
                found[name] = clause
        for name in allowed:
            if name not in found and name not in _OPTIONAL:
                self.reporter.error(
                    f"the {kind} search has no `{name}` clause; add one, e.g. `{_EXAMPLE[name]}`",
                    decl.kind,
                )
        return found

    def _generate_role(self, name: ast.Name) -> str | None:
        model = self.exprs.scope.models.get(name.text)
        if model is not None:
            if model.kind == "generate":
                return name.text
            if model.kind in ("reward", "lookahead"):
                self.reporter.error(
                    f"`{name.text}` is a {model.kind} model; `expand ... with` needs a generate "
                    "model",
                    name,
                )
            return None
        generators = self.exprs.scope.generate_models()
        self.reporter.error(
            f"unknown model `{name.text}`: `expand ... with` needs a generate model declared with "
            f"`model NAME = generate(...)`{suggestion(name.text, generators)}",
            name,
        )
        return None

    def _children(self, expand: ast.ExpandClause) -> ast.Expression | None:
        children: ast.Expression | None = None
        for arg in expand.arguments:
            if arg.keyword is None or arg.keyword.text != "children":
                what = arg.keyword.text if arg.keyword is not None else "a positional argument"
                self.reporter.error(
                    f"`expand` takes only `children = N`, not {what}", arg.keyword or arg
                )
            elif children is not None:
                self.reporter.error("`children` is given twice", arg.keyword)
            else:
                children = arg.value
                self.exprs.expect(arg.value, rule_context("children"), ValueType.INT)
        return children

    def _start(self, clause: ast.Clause | None) -> ast.Expression | None:
        if clause is None:
            return None
        assert isinstance(clause, ast.StartClause)
        args = clause.arguments
        if len(args) != 1 or args[0].keyword is None or args[0].keyword.text != "children":
            self.reporter.error("`start` takes one argument: `start children = N`", clause)
            return None
        self.exprs.expect(args[0].value, rule_context("start children"), ValueType.INT)
        return args[0].value

    # -- the selection

    def _stages(
        self,
        kind: str,
        expand: ast.ExpandClause,
        clauses: Mapping[str, ast.Clause],
        children: ast.Expression | None,
    ) -> tuple[CheckedRule, ...] | None:
        if kind in _SELECTING:
            if expand.selection is None:
                self.reporter.error(
                    f"a {kind} search expands a selection: {selections_for(kind)}, e.g. "
                    f"`expand {'frontier' if kind == 'layered' else 'top(1, by = prm)'} with "
                    "policy`",
                    expand,
                )
                return None
            return SelectionChecker(self.exprs).pipeline(kind, expand.selection, children)
        if expand.selection is not None:
            how = "`select`" if kind == "rollout" else "`order by`"
            self.reporter.error(
                f"a {kind} search picks nodes with {how}; write `expand with ROLE, children = N`",
                expand.selection,
            )
            return None
        if kind == "rollout":
            select = clauses.get("select")
            backup = clauses.get("backup")
            if not isinstance(select, ast.SelectClause) or not isinstance(backup, ast.BackupClause):
                return None  # reported as missing
            rule = SelectionChecker(self.exprs).uct(select, backup)
        else:
            order = clauses.get("order")
            if not isinstance(order, ast.OrderClause):
                return None  # reported as missing
            rule = SelectionChecker(self.exprs).ordered(order, clauses.get("prune"))
        return (rule,) if rule is not None else None

    # -- termination

    def _check_stops(self, kind: str, leaf: ast.LeafClause, until: ast.UntilClause) -> None:
        counts = _GROWING_COUNTS[kind]
        until_bounds = guarantees(until.condition, counts, depth_grows=kind == "layered")
        leaf_bounds_depth = guarantees(leaf.condition, frozenset(), depth_grows=True)
        if kind == "layered" and not (until_bounds or leaf_bounds_depth):
            extra = (
                "; `count(leaves)` alone is not a bound, since a layer can end without new leaves"
                if "leaves" in counted(until.condition)
                else ""
            )
            self.reporter.error(
                "this search may never stop: `until` bounds neither the depth nor a count that "
                f"must grow, such as count(nodes){extra}; add e.g. `or depth >= 20`",
                until.condition,
            )
        elif kind == "rollout":
            if not until_bounds:
                self.reporter.error(
                    "this search may never stop: `until` must bound the number of rollouts, "
                    "e.g. `until count(rollouts) >= 16`",
                    until.condition,
                )
            if not leaf_bounds_depth:
                self.reporter.error(
                    "a rollout may never reach a leaf: `leaf when` must bound the depth, e.g. "
                    "`leaf when answered or depth >= 8`",
                    leaf.condition,
                )
        elif kind in ("depth_first", "best_first") and not until_bounds:
            self.reporter.error(
                "this search may never stop: `until` must bound count(expansions) or "
                "count(nodes), e.g. `or count(expansions) >= 100`",
                until.condition,
            )


def _is_call(expr: ast.Expression, name: str) -> bool:
    return isinstance(expr, ast.CallExpr) and expr.function.text == name


def counted(expr: ast.Expression) -> frozenset[str]:
    """Every `count(X)` target an expression reads."""
    if isinstance(expr, ast.CallExpr):
        out: frozenset[str] = frozenset()
        if expr.function.text == "count":
            out = frozenset(a.value.name for a in expr.arguments if isinstance(a.value, ast.Var))
        for a in expr.arguments:
            out |= counted(a.value)
        return out
    if isinstance(expr, ast.BinaryOp):
        return counted(expr.left) | counted(expr.right)
    if isinstance(expr, ast.UnaryOp):
        return counted(expr.operand)
    return frozenset()


def _is_constant(expr: ast.Expression) -> bool:
    """Reads only literals and parameters (type checking has resolved every Var already)."""
    if isinstance(expr, ast.NumberLit):
        return True
    if isinstance(expr, ast.Var):
        return expr.name not in ("depth", "tokens", "answered", "eos")
    if isinstance(expr, ast.UnaryOp):
        return _is_constant(expr.operand)
    if isinstance(expr, ast.BinaryOp):
        return _is_constant(expr.left) and _is_constant(expr.right)
    if isinstance(expr, ast.CallExpr):
        return expr.function.text not in ("count", "share") and all(
            _is_constant(a.value) for a in expr.arguments
        )
    return False


def _grows(expr: ast.Expression, counts: frozenset[str], depth_grows: bool) -> bool:
    if isinstance(expr, ast.Var):
        return depth_grows and expr.name == "depth"
    if isinstance(expr, ast.CallExpr) and expr.function.text == "count":
        target = expr.arguments[0].value if expr.arguments else None
        return isinstance(target, ast.Var) and target.name in counts
    return False


def guarantees(expr: ast.Expression, counts: frozenset[str], depth_grows: bool) -> bool:
    """Whether `expr` must become true: it bounds a growing quantity by a constant.

    `a or b` holds once either does, `a and b` once both do (each is monotone); an atom is
    `Q >= E` or `Q > E` (either way round) where Q grows by at least one per iteration and E
    reads only parameters and literals.
    """
    if not isinstance(expr, ast.BinaryOp):
        return False
    if expr.op == "or":
        return guarantees(expr.left, counts, depth_grows) or guarantees(
            expr.right, counts, depth_grows
        )
    if expr.op == "and":
        return guarantees(expr.left, counts, depth_grows) and guarantees(
            expr.right, counts, depth_grows
        )
    if expr.op in (">=", ">"):
        return _grows(expr.left, counts, depth_grows) and _is_constant(expr.right)
    if expr.op in ("<=", "<"):
        return _grows(expr.right, counts, depth_grows) and _is_constant(expr.left)
    return False

"""Checking the `search` block: its clauses, its selection rule, and that it must stop.

Each search kind takes a fixed set of clauses. The selection is resolved to one rule of the IR
(`frontier` -> each, `top` -> top, `allocate(softmax ...)` -> softmax_allocate, ...) with its
arguments typed. A search must provably end: `until` has to bound something that grows every
iteration (the layer depth, count(nodes), count(rollouts), ...) by a value known before the run.
"""

from __future__ import annotations

from collections.abc import Mapping

from spexlang import ast
from spexlang.check_expr import LEAF, UNTIL, ExprChecker, rule_context
from spexlang.checked import CheckedRule, CheckedSearch, ValueType
from spexlang.diagnostics import Severity
from spexlang.scope import suggestion

KINDS = ("layered", "rollout", "depth_first")
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
    "rollout": frozenset({"rollouts"}),
    "depth_first": frozenset({"nodes", "expansions"}),
}
_SELECTION_HELP = (
    "`frontier`, `top(K, by = R)`, `allocate(softmax(R / T), budget = B)` or "
    "`allocate(ets(R / T, keep_cost = C), budget = B)`"
)


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
                f"unknown search kind `{kind}`; the kinds are layered, rollout and depth_first"
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
        role = rule = None
        root_children = self._start(clauses.get("start"))
        if expand is not None:
            role = self._generate_role(expand.role)
            rule = self._rule(kind, expand, clauses, self._children(expand))
        leaf_ok = leaf is not None and self.exprs.expect(leaf.condition, LEAF, ValueType.BOOL)
        until_ok = until is not None and self.exprs.expect(until.condition, UNTIL, ValueType.BOOL)
        if leaf_ok and until_ok:
            assert leaf is not None and until is not None
            self._check_stops(kind, leaf, until)
        if self._errors() > errors_before or role is None or rule is None:
            return None
        assert leaf is not None and until is not None
        return CheckedSearch(
            kind, decl, role, root_children, rule, leaf.condition, until.condition, backup
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
            if model.kind == "reward":
                self.reporter.error(
                    f"`{name.text}` is a reward model; `expand ... with` needs a generate model",
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

    # -- the selection rule

    def _rule(
        self,
        kind: str,
        expand: ast.ExpandClause,
        clauses: Mapping[str, ast.Clause],
        children: ast.Expression | None,
    ) -> CheckedRule | None:
        one = ast.NumberLit(1, expand.span)
        if kind == "layered":
            if expand.selection is None:
                self.reporter.error(
                    f"a layered search expands a selection: {_SELECTION_HELP}, e.g. "
                    "`expand frontier with policy`",
                    expand,
                )
                return None
            if children is not None and _is_call(expand.selection.rule, "allocate"):
                self.reporter.error(
                    "allocate(...) decides how many children each node gets; remove `children`",
                    children,
                )
                return None
            return self._selection(expand.selection, children or one)
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
            return self._uct(select, backup, children or one)
        order = clauses.get("order")
        if not isinstance(order, ast.OrderClause):
            return None  # reported as missing
        return self._best_first(order, clauses.get("prune"), children or one)

    def _arguments(
        self,
        call: ast.CallExpr,
        positional: tuple[str, ...],
        required: tuple[str, ...],
        optional: tuple[str, ...] = (),
    ) -> dict[str, ast.Expression] | None:
        """Match a rule call's arguments by position and keyword; None after reporting."""
        fn = call.function.text
        out: dict[str, ast.Expression] = {}
        given = [a for a in call.arguments if a.keyword is None]
        if len(given) != len(positional):
            self.reporter.error(
                f"`{fn}` takes {len(positional)} positional argument(s) "
                f"({', '.join(positional) or 'none'}), but is given {len(given)}",
                call,
            )
            return None
        out.update(zip(positional, (a.value for a in given), strict=True))
        keywords = required + optional
        for arg in call.arguments:
            if arg.keyword is None:
                continue
            key = arg.keyword.text
            if key not in keywords:
                known = ", ".join(keywords) or "none"
                self.reporter.error(
                    f"`{fn}` has no argument `{key}` (its named arguments: {known})"
                    f"{suggestion(key, keywords)}",
                    arg.keyword,
                )
                return None
            if key in out:
                self.reporter.error(f"`{key}` is given twice", arg.keyword)
                return None
            out[key] = arg.value
        for key in required:
            if key not in out:
                self.reporter.error(f"`{fn}` needs `{key} = ...`", call)
                return None
        return out

    def _selection(self, selection: ast.Selection, children: ast.Expression) -> CheckedRule | None:
        rule = selection.rule
        if isinstance(rule, ast.Var) and rule.name == "frontier":
            if selection.per_subtree:
                self.reporter.error("`per subtree` applies to `top(...)` only", selection)
                return None
            return CheckedRule("each", False, None, {"children": children}, selection)
        fn = rule.function.text if isinstance(rule, ast.CallExpr) else ""
        if isinstance(rule, ast.CallExpr) and fn == "top":
            args = self._arguments(rule, ("k",), ("by",))
            if args is None:
                return None
            self.exprs.expect(args["k"], rule_context("K of top"), ValueType.INT)
            role = self.exprs.reward_role(args["by"], "`by`")
            if role is None:
                return None
            arguments = {"k": args["k"], "children": children}
            return CheckedRule("top", selection.per_subtree, role, arguments, selection)
        if isinstance(rule, ast.CallExpr) and fn == "allocate":
            if selection.per_subtree:
                self.reporter.error("`per subtree` applies to `top(...)` only", selection)
                return None
            return self._allocate(rule, selection, children)
        self.reporter.error(f"expected a selection: {_SELECTION_HELP}", rule)
        return None

    def _allocate(
        self, call: ast.CallExpr, selection: ast.Selection, children: ast.Expression
    ) -> CheckedRule | None:
        args = self._arguments(call, ("distribution",), ("budget",))
        if args is None:
            return None
        dist = args["distribution"]
        name = dist.function.text if isinstance(dist, ast.CallExpr) else ""
        if not isinstance(dist, ast.CallExpr) or name not in ("softmax", "ets"):
            self.reporter.error(
                "allocate(...) splits its budget by `softmax(R / T)` or "
                "`ets(R / T, keep_cost = C)`",
                dist,
            )
            return None
        # ETS's `keep_cost` is optional: without it each node costs the paper's 1/(M+N).
        inner = self._arguments(dist, ("score",), (), ("keep_cost",) if name == "ets" else ())
        if inner is None:
            return None
        score = inner["score"]
        temperature: ast.Expression = ast.NumberLit(1, score.span)
        if isinstance(score, ast.BinaryOp) and score.op == "/":
            division = score
            score, temperature = division.left, division.right
        role = self.exprs.reward_role(score, f"`{name}`")
        self.exprs.expect(temperature, rule_context("temperature"), ValueType.FLOAT)
        self.exprs.expect(args["budget"], rule_context("budget"), ValueType.INT)
        arguments = {"temperature": temperature, "budget": args["budget"]}
        if name == "ets" and "keep_cost" in inner:
            self.exprs.expect(inner["keep_cost"], rule_context("keep_cost"), ValueType.FLOAT)
            arguments["keep_cost"] = inner["keep_cost"]
        if role is None:
            return None
        rule = "softmax_allocate" if name == "softmax" else "ets_allocate"
        return CheckedRule(rule, False, role, arguments, selection)

    def _uct(
        self, select: ast.SelectClause, backup: ast.BackupClause, children: ast.Expression
    ) -> CheckedRule | None:
        backed = self.exprs.reward_role(backup.role, "`backup`")
        call = select.rule
        if not isinstance(call, ast.CallExpr) or call.function.text != "uct":
            self.reporter.error("a rollout search selects with `uct(C)`", call)
            return None
        args = self._arguments(call, ("exploration",), (), ("by",))
        if args is None:
            return None
        self.exprs.expect(args["exploration"], rule_context("exploration"), ValueType.FLOAT)
        if "by" in args:
            by = self.exprs.reward_role(args["by"], "`by`")
            if by is not None and backed is not None and by != backed:
                self.reporter.error(
                    f"uct reads the values `backup` carries up (`{backed}`), not `{by}`",
                    args["by"],
                )
                return None
        if backed is None:
            return None
        arguments = {"exploration": args["exploration"], "children": children}
        return CheckedRule("uct", False, backed, arguments, select)

    def _best_first(
        self, order: ast.OrderClause, prune: ast.Clause | None, children: ast.Expression
    ) -> CheckedRule | None:
        role = self.exprs.reward_role(order.role, "`order by`")
        arguments: dict[str, ast.Expression] = {"children": children}
        if prune is not None:
            assert isinstance(prune, ast.PruneClause)
            cond = prune.condition
            if not (
                isinstance(cond, ast.BinaryOp) and cond.op == "<" and isinstance(cond.left, ast.Var)
            ):
                self.reporter.error(
                    "`prune when` takes the form `R < BOUND`, e.g. `prune when prm < 0.5`", cond
                )
                return None
            assert isinstance(cond, ast.BinaryOp)
            pruned = self.exprs.reward_role(cond.left, "`prune when`")
            if pruned is not None and role is not None and pruned != role:
                self.reporter.error(
                    f"`prune` reads `{pruned}` but the search is ordered by `{role}`; one "
                    "reward drives a depth-first search",
                    cond.left,
                )
                return None
            self.exprs.expect(cond.right, rule_context("prune bound"), ValueType.FLOAT)
            arguments["prune_below"] = cond.right
        if role is None:
            return None
        return CheckedRule("best_first", False, role, arguments, order)

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
        elif kind == "depth_first" and not until_bounds:
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
        return expr.name not in ("depth", "tokens", "answered")
    if isinstance(expr, ast.UnaryOp):
        return _is_constant(expr.operand)
    if isinstance(expr, ast.BinaryOp):
        return _is_constant(expr.left) and _is_constant(expr.right)
    if isinstance(expr, ast.CallExpr):
        return expr.function.text != "count" and all(_is_constant(a.value) for a in expr.arguments)
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

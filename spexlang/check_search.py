"""Checking the `search` block: its clauses, its selection, and that it must stop.

Each search kind takes a fixed set of clauses. The selection is resolved, stage by stage, to rules
of the registry in compiler/rules.py, whose entries say how each rule is written and what its
arguments are; nothing here is specific to one rule. A search must provably end: `until` has to
bound something that grows every iteration (the layer depth, count(nodes), count(rollouts), ...)
by a value known before the run.
"""

from __future__ import annotations

from collections.abc import Mapping

from compiler.ir import SearchKind
from compiler.rules import RULES, ArgType, Rule, Spelling, Written, rule_written
from spexlang import ast
from spexlang.check_expr import LEAF, UNTIL, WHERE, ExprChecker, rule_context
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
_INT_OR_FLOAT = {ArgType.INT: ValueType.INT, ArgType.FLOAT: ValueType.FLOAT}


def _and(words: tuple[str, ...]) -> str:
    return ", ".join(words[:-1]) + " and " + words[-1]


def written_form(rule: Rule) -> str:
    """How a rule is written, for messages: `top(K, by = R)`, `allocate(softmax(R / T), ...)`."""
    if rule.spelling is Spelling.WORD:
        return f"`{rule.written}`"
    if rule.spelling is Spelling.ALLOCATE:
        inner = "".join(f", {a.name} = {a.shown}" for a in rule.args if a.written is Written.INNER)
        outer = "".join(
            f", {a.name} = {a.shown}" for a in rule.args if a.written is Written.KEYWORD
        )
        return f"`allocate({rule.written}(R / T{inner}){outer})`"
    parts = [a.shown for a in rule.args if a.written is Written.POSITIONAL]
    parts += [
        f"{a.name} = {a.shown}" for a in rule.args if a.written is Written.KEYWORD and a.required
    ]
    return f"`{rule.written}({', '.join(parts)})`"


def _selections_for(kind: str) -> str:
    rules = [r for r in RULES.values() if SearchKind(kind) in r.searches]
    forms = [written_form(r) for r in rules if r.spelling is not Spelling.CLAUSE]
    return ", ".join(forms[:-1]) + " or " + forms[-1] if len(forms) > 1 else "".join(forms)


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
        if RULES[stages[-1].rule].allocates is not None:
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
                    f"a {kind} search expands a selection: {_selections_for(kind)}, e.g. "
                    f"`expand {'frontier' if kind == 'layered' else 'top(1, by = prm)'} with "
                    "policy`",
                    expand,
                )
                return None
            return self._pipeline(kind, expand.selection, children)
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
            rule = self._uct(select, backup)
        else:
            order = clauses.get("order")
            if not isinstance(order, ast.OrderClause):
                return None  # reported as missing
            rule = self._ordered(order, clauses.get("prune"))
        return (rule,) if rule is not None else None

    def _pipeline(
        self, kind: str, selection: ast.Selection, children: ast.Expression | None
    ) -> tuple[CheckedRule, ...] | None:
        out: list[CheckedRule] = []
        last = len(selection.stages) - 1
        for i, expr in enumerate(selection.stages):
            rule = self._stage_rule(kind, expr)
            if rule is None:
                return None
            if last > 0 and not rule.chains:
                self.reporter.error(
                    f"{written_form(rule)} selects on its own; it cannot be a stage of a "
                    "`then` pipeline",
                    expr,
                )
                return None
            if rule.allocates is not None and i != last:
                self.reporter.error(
                    f"{written_form(rule)} decides how many children each node gets, so it must "
                    "be the last stage",
                    expr,
                )
                return None
            if rule.allocates is not None and children is not None:
                self.reporter.error(
                    "allocate(...) decides how many children each node gets; remove `children`",
                    children,
                )
                return None
            if selection.per_subtree and not rule.per_subtree:
                allowed = [written_form(r) for r in RULES.values() if r.per_subtree]
                self.reporter.error(
                    f"`per subtree` applies to {' and '.join(allowed)} only", selection
                )
                return None
            checked = self._call(rule, expr, selection.per_subtree)
            if checked is None:
                return None
            out.append(checked)
        return tuple(out)

    def _stage_rule(self, kind: str, expr: ast.Expression) -> Rule | None:
        """The registry entry a stage is written as, or None after saying why there is none."""
        rule: Rule | None = None
        if isinstance(expr, ast.Var):
            rule = rule_written(Spelling.WORD, expr.name)
        elif isinstance(expr, ast.CallExpr) and expr.function.text == "allocate":
            dist = expr.arguments[0].value if expr.arguments else None
            word = dist.function.text if isinstance(dist, ast.CallExpr) else ""
            rule = rule_written(Spelling.ALLOCATE, word)
            if rule is None:
                dists = [written_form(r) for r in RULES.values() if r.spelling is Spelling.ALLOCATE]
                self.reporter.error(
                    f"allocate(...) splits its budget by one of {', '.join(dists)}"
                    f"{suggestion(word, [r.written for r in RULES.values()])}",
                    dist if dist is not None else expr,
                )
                return None
        elif isinstance(expr, ast.CallExpr):
            rule = rule_written(Spelling.CALL, expr.function.text)
        if rule is None or SearchKind(kind) not in rule.searches:
            written = expr.name if isinstance(expr, ast.Var) else ""
            if isinstance(expr, ast.CallExpr):
                written = expr.function.text
            words = [
                r.written
                for r in RULES.values()
                if SearchKind(kind) in r.searches and r.spelling is not Spelling.CLAUSE
            ]
            hint = "" if rule is not None else suggestion(written, [*words, "allocate"])
            where = f" in a {kind} search" if rule is not None else ""
            self.reporter.error(
                f"expected a selection{where}: {_selections_for(kind)}{hint}",
                expr,
            )
            return None
        return rule

    def _arguments(
        self,
        call: ast.CallExpr,
        positional: tuple[str, ...],
        required: tuple[str, ...],
        optional: tuple[str, ...] = (),
    ) -> dict[str, ast.Expression] | None:
        """Match a call's arguments by position and keyword; None after reporting."""
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

    def _written(self, rule: Rule, expr: ast.Expression) -> dict[str, ast.Expression] | None:
        """The rule's arguments as written in `expr`, by the registry's names."""
        if rule.spelling is Spelling.WORD:
            return {}
        assert isinstance(expr, ast.CallExpr)

        def names(where: Written, required: bool | None = None) -> tuple[str, ...]:
            return tuple(
                a.name
                for a in rule.args
                if a.written is where and (required is None or a.required is required)
            )

        if rule.spelling is Spelling.CALL:
            return self._arguments(
                expr,
                names(Written.POSITIONAL),
                names(Written.KEYWORD, True),
                names(Written.KEYWORD, False),
            )
        outer = self._arguments(
            expr, ("distribution",), names(Written.KEYWORD, True), names(Written.KEYWORD, False)
        )
        if outer is None:
            return None
        dist = outer.pop("distribution")
        assert isinstance(dist, ast.CallExpr)
        inner = self._arguments(
            dist, ("score",), names(Written.INNER, True), names(Written.INNER, False)
        )
        if inner is None:
            return None
        score = inner.pop("score")
        divisor = next((a for a in rule.args if a.written is Written.DIVISOR), None)
        if divisor is not None and isinstance(score, ast.BinaryOp) and score.op == "/":
            outer[divisor.name] = score.right
            score = score.left
        score_arg = next(a for a in rule.args if a.written is Written.SCORE)
        outer[score_arg.name] = score
        outer.update(inner)
        return outer

    def _call(self, rule: Rule, expr: ast.Expression, per_subtree: bool) -> CheckedRule | None:
        """Check one stage's arguments against its registry entry."""
        written = self._written(rule, expr)
        if written is None:
            return None
        return self._typed(rule, written, per_subtree, expr)

    def _typed(
        self,
        rule: Rule,
        written: dict[str, ast.Expression],
        per_subtree: bool,
        node: ast.Node,
    ) -> CheckedRule | None:
        ok = True
        value_role: str | None = None
        for arg in rule.args:
            value = written.get(arg.name)
            if value is None:
                continue
            if arg.type is ArgType.VALUE:
                what = rule.written if arg.written is Written.SCORE else arg.doc
                role = self.exprs.reward_role(value, f"`{what}`")
                ok = ok and role is not None
                value_role = value_role or role
            elif arg.type is ArgType.CONDITION:
                ok = self.exprs.expect(value, WHERE, ValueType.BOOL) and ok
            else:
                want = _INT_OR_FLOAT[arg.type]
                ok = self.exprs.expect(value, rule_context(arg.doc), want) and ok
        if not ok:
            return None
        return CheckedRule(rule.name, per_subtree, value_role, written, node)

    def _uct(self, select: ast.SelectClause, backup: ast.BackupClause) -> CheckedRule | None:
        backed = self.exprs.reward_role(backup.role, "`backup`")
        rule = self._stage_rule("rollout", select.rule)
        if rule is None:
            return None
        checked = self._call(rule, select.rule, False)
        if checked is None or backed is None:
            return None
        by = checked.reward_role
        if by is not None and by != backed:
            self.reporter.error(
                f"uct reads the values `backup` carries up (`{backed}`), not `{by}`",
                checked.arguments["by"],
            )
            return None
        arguments = dict(checked.arguments)
        arguments.setdefault("by", ast.Var(backed, backup.role.span))
        return CheckedRule(rule.name, False, backed, arguments, select)

    def _ordered(self, order: ast.OrderClause, prune: ast.Clause | None) -> CheckedRule | None:
        rule = next(r for r in RULES.values() if r.spelling is Spelling.CLAUSE)
        written: dict[str, ast.Expression] = {"by": ast.Var(order.role.text, order.role.span)}
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
            assert isinstance(cond, ast.BinaryOp) and isinstance(cond.left, ast.Var)
            if cond.left.name != order.role.text:
                pruned = self.exprs.reward_role(cond.left, "`prune when`")
                if pruned is not None:
                    self.reporter.error(
                        f"`prune` reads `{pruned}` but the search is ordered by "
                        f"`{order.role.text}`; one reward drives a depth-first search",
                        cond.left,
                    )
                return None
            written["prune_below"] = cond.right
        checked = self._typed(rule, written, False, order)
        if checked is None:
            return None
        return checked

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

"""Checking a selection against the rule registry (compiler/rules.py): one stage at a time.

A stage is written as the registry entry says (`top(K, by = R)`, `frontier`, `allocate(softmax(R /
T), budget = B)`, `uct(C)`, or, for `ordered`, the `order by` and `prune when` clauses); its
arguments are matched by position and keyword and typed by the entry's argument types. Nothing
here is specific to one rule.
"""

from __future__ import annotations

from compiler.ir import SearchKind
from compiler.rules import RULES, ArgType, Rule, Spelling, Written, rule_written
from spexlang import ast
from spexlang.check_expr import WHERE, ExprChecker, rule_context
from spexlang.checked import CheckedRule, ValueType
from spexlang.scope import suggestion

_INT_OR_FLOAT = {ArgType.INT: ValueType.INT, ArgType.FLOAT: ValueType.FLOAT}


def written_form(rule: Rule) -> str:
    """How a rule is written, for messages: `top(K, by = R)`, `allocate(softmax(R / T), ...)`."""
    if rule.spelling is Spelling.WORD:
        return f"`{rule.written}`"
    if rule.spelling is Spelling.ALLOCATE:
        inner = "".join(
            f", {a.name} = {a.shown}" if a.required else f"[, {a.name} = {a.shown}]"
            for a in rule.args
            if a.written is Written.INNER
        )
        outer = "".join(
            f", {a.name} = {a.shown}" for a in rule.args if a.written is Written.KEYWORD
        )
        return f"`allocate({rule.written}(R / T{inner}){outer})`"
    parts = [a.shown for a in rule.args if a.written is Written.POSITIONAL]
    parts += [
        f"{a.name} = {a.shown}" for a in rule.args if a.written is Written.KEYWORD and a.required
    ]
    return f"`{rule.written}({', '.join(parts)})`"


def selections_for(kind: str) -> str:
    rules = [r for r in RULES.values() if SearchKind(kind) in r.searches]
    forms = [written_form(r) for r in rules if r.spelling is not Spelling.CLAUSE]
    return ", ".join(forms[:-1]) + " or " + forms[-1] if len(forms) > 1 else "".join(forms)


class SelectionChecker:
    """Resolves selection stages to registry rules with typed arguments, reporting mistakes."""

    def __init__(self, exprs: ExprChecker) -> None:
        self.exprs = exprs
        self.reporter = exprs.reporter

    @staticmethod
    def allocates(stage: CheckedRule) -> bool:
        """Whether the stage's rule hands out the children itself (then `children` is unset)."""
        return RULES[stage.rule].allocates is not None

    def pipeline(
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
                f"expected a selection{where}: {selections_for(kind)}{hint}",
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
        """Match a call's arguments by position and keyword; None after reporting.

        A positional argument may also be named (`top(k = 4, by = prm)` as `top(4, by = prm)`).
        """
        fn = call.function.text
        out: dict[str, ast.Expression] = {}
        given = [a for a in call.arguments if a.keyword is None]
        if len(given) > len(positional):
            self.reporter.error(
                f"`{fn}` takes {len(positional)} positional argument(s) "
                f"({', '.join(positional) or 'none'}), but is given {len(given)}",
                call,
            )
            return None
        out.update(zip(positional, (a.value for a in given), strict=False))
        keywords = positional + required + optional
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
        for index, key in enumerate(positional):
            if key not in out:
                place = ("first", "second", "third")[index] if index < 3 else f"{index + 1}th"
                self.reporter.error(
                    f"`{fn}` needs `{key}`: its {place} argument, or `{key} = ...`", call
                )
                return None
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

    def uct(self, select: ast.SelectClause, backup: ast.BackupClause) -> CheckedRule | None:
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

    def ordered(self, order: ast.OrderClause, prune: ast.Clause | None) -> CheckedRule | None:
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

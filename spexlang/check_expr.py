"""Typing expressions: which names a place may read, and what type each expression has.

Every expression is checked in an `ExprContext` saying where it is (`until`, `children`, a
model argument) and what it may read there: a leaf condition reads one node (depth, tokens,
answered, reward scores), `until` and rule arguments read the search's tallies (`count(...)`,
depth), model arguments read parameters only. Errors name the place and what it can read.
"""

from __future__ import annotations

from dataclasses import dataclass

from spexlang import ast
from spexlang.checked import ValueType
from spexlang.scope import COUNTED, FUNCTIONS, NODE_NAMES, RULES, Reporter, Scope, suggestion

_ARITHMETIC = frozenset({"+", "-", "*", "/", "//", "%"})
_ORDERING = frozenset({"<", "<=", ">", ">="})
_EQUALITY = frozenset({"==", "!="})
_LOGIC = frozenset({"and", "or"})
_ONE_ARGUMENT = frozenset({"ceil", "floor", "abs", "exp", "log", "sqrt"})


@dataclass(frozen=True)
class ExprContext:
    """Where an expression sits and what it may read there."""

    where: str  # "`until`", "`children`": how messages name the place
    node_names: frozenset[str]  # which of depth / tokens / answered it may read
    rewards: bool  # may it read reward scores
    counts: bool  # may it read count(...)
    reads: str  # what it may read, in words, for messages
    answers: bool = False  # may it read share(leader) (the stop condition only)


LEAF = ExprContext(
    "`leaf when`",
    frozenset(NODE_NAMES),
    rewards=True,
    counts=False,
    reads="parameters, depth, tokens, answered, eos and reward scores of the node",
)
WHERE = ExprContext(
    "`where`",
    frozenset(NODE_NAMES),
    rewards=True,
    counts=False,
    reads="parameters, depth, tokens, answered, eos and reward scores of the node",
)
UNTIL = ExprContext(
    "`until`",
    frozenset({"depth"}),
    False,
    True,
    "parameters, depth, count(...) and share(leader)",
    answers=True,
)


def rule_context(what: str) -> ExprContext:
    """A selection rule's numeric argument: evaluated once per layer or expansion."""
    return ExprContext(
        f"`{what}`", frozenset({"depth"}), False, True, "parameters, depth and count(...)"
    )


def constant_context(what: str) -> ExprContext:
    """A value fixed before the search starts: model arguments, parameter defaults."""
    return ExprContext(f"`{what}`", frozenset(), False, False, "parameters and literals")


def _join_types(a: ValueType, b: ValueType) -> ValueType:
    return ValueType.INT if a is ValueType.INT and b is ValueType.INT else ValueType.FLOAT


class ExprChecker:
    """Types expressions against a scope, reporting every problem found."""

    def __init__(self, scope: Scope, reporter: Reporter) -> None:
        self.scope = scope
        self.reporter = reporter

    def expect(self, expr: ast.Expression, ctx: ExprContext, want: ValueType) -> bool:
        """Check `expr` and that its type fits `want` (an int fits a float); report if not."""
        got = self.type_of(expr, ctx)
        if got is None:
            return False
        if got is want or (want is ValueType.FLOAT and got is ValueType.INT):
            return True
        if want is ValueType.INT and got is ValueType.FLOAT:
            message = (
                f"{ctx.where} needs a whole number (int), but this expression is a float; "
                "use `//` or floor(...)"
            )
        else:
            message = (
                f"{ctx.where} needs {want.describe()}, but this expression is {got.describe()}"
            )
        self.reporter.error(message, expr)
        return False

    def type_of(self, expr: ast.Expression, ctx: ExprContext) -> ValueType | None:
        """The type of `expr`, or None after reporting why it has none."""
        if isinstance(expr, ast.NumberLit):
            return ValueType.INT if isinstance(expr.value, int) else ValueType.FLOAT
        if isinstance(expr, ast.StringLit):
            return ValueType.STR
        if isinstance(expr, ast.BoolLit):
            return ValueType.BOOL
        if isinstance(expr, ast.ListLit):
            self.reporter.error("a list is only allowed as a model's `stop = [...]`", expr)
            return None
        if isinstance(expr, ast.Var):
            return self._var(expr, ctx)
        if isinstance(expr, ast.UnaryOp):
            return self._unary(expr, ctx)
        if isinstance(expr, ast.BinaryOp):
            return self._binary(expr, ctx)
        return self._call(expr, ctx)

    # -- names

    def _var(self, var: ast.Var, ctx: ExprContext) -> ValueType | None:
        name = var.name
        param = self.scope.params.get(name)
        if param is not None:
            return param.type
        model = self.scope.models.get(name)
        if model is not None:
            return self._model_as_value(var, model.kind, ctx)
        if name in NODE_NAMES:
            if name not in ctx.node_names:
                self.reporter.error(
                    f"`{name}` belongs to a single node; {ctx.where} can read {ctx.reads}", var
                )
                return None
            return NODE_NAMES[name]
        if name in COUNTED:
            self.reporter.error(
                f"`{name}` is a set of nodes, not a value; write `count({name})` for how many",
                var,
            )
            return None
        if name in RULES:
            self.reporter.error(
                f"`{name}` is a selection or answer rule, not a value; {ctx.where} can read "
                f"{ctx.reads}",
                var,
            )
            return None
        self._unknown(var, ctx)
        return None

    def _model_as_value(self, var: ast.Var, kind: str, ctx: ExprContext) -> ValueType | None:
        if kind == "generate":
            self.reporter.error(
                f"`{var.name}` is a generate model, not a value; {ctx.where} can read {ctx.reads}",
                var,
            )
            return None
        if kind in ("reward", "lookahead") and not ctx.rewards:
            self.reporter.error(
                f"`{var.name}` is a node's reward score; {ctx.where} can read {ctx.reads}", var
            )
            return None
        return ValueType.FLOAT if kind in ("reward", "lookahead") else None

    def _unknown(self, var: ast.Var, ctx: ExprContext) -> None:
        candidates = [*self.scope.params, *ctx.node_names]
        if ctx.rewards:
            candidates += self.scope.value_models()
        message = f"unknown name `{var.name}`" + suggestion(var.name, candidates)
        if ctx.rewards and not self.scope.value_models() and not suggestion(var.name, candidates):
            message += (
                "; if it is a reward score, declare the reward model: "
                f"`model {var.name} = reward(aggregate = last)`"
            )
        self.reporter.error(message, var)

    # -- operators

    def _unary(self, expr: ast.UnaryOp, ctx: ExprContext) -> ValueType | None:
        operand = self.type_of(expr.operand, ctx)
        if operand is None:
            return None
        if expr.op == "not":
            if operand is not ValueType.BOOL:
                self.reporter.error(
                    f"`not` needs a condition (bool), but this is {operand.describe()}",
                    expr.operand,
                )
                return None
            return ValueType.BOOL
        if not operand.numeric:
            self.reporter.error(
                f"`-` needs a number, but this is {operand.describe()}", expr.operand
            )
            return None
        return operand

    def _binary(self, expr: ast.BinaryOp, ctx: ExprContext) -> ValueType | None:
        left = self.type_of(expr.left, ctx)
        right = self.type_of(expr.right, ctx)
        if left is None or right is None:
            return None
        op = expr.op
        if op in _LOGIC:
            for side, t in ((expr.left, left), (expr.right, right)):
                if t is not ValueType.BOOL:
                    self.reporter.error(
                        f"`{op}` joins conditions (bool), but this is {t.describe()}", side
                    )
                    return None
            return ValueType.BOOL
        if op in _EQUALITY and (left is right or (left.numeric and right.numeric)):
            return ValueType.BOOL
        for side, t in ((expr.left, left), (expr.right, right)):
            if not t.numeric:
                self.reporter.error(
                    f"`{op}` needs numbers on both sides, but this is {t.describe()}", side
                )
                return None
        if op in _ORDERING or op in _EQUALITY:
            return ValueType.BOOL
        if op == "/":
            return ValueType.FLOAT
        return _join_types(left, right)

    # -- calls

    def _call(self, call: ast.CallExpr, ctx: ExprContext) -> ValueType | None:
        fn = call.function.text
        if fn == "count":
            return self._count(call, ctx)
        if fn == "share":
            return self._share(call, ctx)
        if fn in RULES:
            self.reporter.error(
                f"`{fn}(...)` is a selection or answer rule, not a value; {ctx.where} can read "
                f"{ctx.reads}",
                call.function,
            )
            return None
        if fn not in FUNCTIONS:
            known = (*FUNCTIONS, "count", "share")
            self.reporter.error(
                f"unknown function `{fn}` (the functions are {', '.join(FUNCTIONS)}, count and "
                f"share){suggestion(fn, known)}",
                call.function,
            )
            return None
        for arg in call.arguments:
            if arg.keyword is not None:
                self.reporter.error(f"`{fn}` takes no named arguments", arg)
                return None
        n = len(call.arguments)
        if (fn in _ONE_ARGUMENT and n != 1) or (fn not in _ONE_ARGUMENT and n < 2):
            wanted = "one argument" if fn in _ONE_ARGUMENT else "two or more arguments"
            self.reporter.error(f"`{fn}` takes {wanted}, but is given {n}", call)
            return None
        types: list[ValueType] = []
        for arg in call.arguments:
            t = self.type_of(arg.value, ctx)
            if t is None:
                return None
            if not t.numeric:
                self.reporter.error(f"`{fn}` needs a number, but this is {t.describe()}", arg)
                return None
            types.append(t)
        if fn in ("ceil", "floor"):
            return ValueType.INT
        if fn in ("exp", "log", "sqrt"):
            return ValueType.FLOAT
        result = types[0]
        for t in types[1:]:
            result = _join_types(result, t)
        return result

    def _count(self, call: ast.CallExpr, ctx: ExprContext) -> ValueType | None:
        args = call.arguments
        what = args[0].value if len(args) == 1 and args[0].keyword is None else None
        if not isinstance(what, ast.Var):
            self.reporter.error(
                f"`count` takes one of {', '.join(COUNTED)}, e.g. `count(leaves)`", call
            )
            return None
        if what.name not in COUNTED:
            self.reporter.error(
                f"cannot count `{what.name}` (count takes {', '.join(COUNTED)})"
                f"{suggestion(what.name, COUNTED)}",
                what,
            )
            return None
        if not ctx.counts:
            self.reporter.error(
                f"`count({what.name})` is a search-wide tally; {ctx.where} can read {ctx.reads}",
                call,
            )
            return None
        return ValueType.INT

    def _share(self, call: ast.CallExpr, ctx: ExprContext) -> ValueType | None:
        """`share(leader)` or `share(leader, weight = R)`: the leading answer's share."""
        positional = [a for a in call.arguments if a.keyword is None]
        first = positional[0].value if len(positional) == 1 else None
        if not (isinstance(first, ast.Var) and first.name == "leader"):
            self.reporter.error(
                "`share` takes `leader`: `share(leader)` or `share(leader, weight = R)`", call
            )
            return None
        for arg in call.arguments:
            if arg.keyword is None:
                continue
            if arg.keyword.text != "weight":
                self.reporter.error(
                    f"`share` has no argument `{arg.keyword.text}` (its named argument: weight)"
                    f"{suggestion(arg.keyword.text, ('weight',))}",
                    arg.keyword,
                )
                return None
            if self.reward_role(arg.value, "`weight`") is None:
                return None
        if not ctx.answers:
            self.reporter.error(
                f"`share(leader)` is read when the search decides to stop; {ctx.where} can read "
                f"{ctx.reads}",
                call,
            )
            return None
        return ValueType.FLOAT

    # -- roles named where a reward is read (`by = R`, `weight = R`, `backup R of leaf`)

    def reward_role(self, node: ast.Name | ast.Expression, what: str) -> str | None:
        """The reward model `node` names, or None after saying why it names none."""
        if isinstance(node, ast.Name):
            name, where = node.text, node.span
        elif isinstance(node, ast.Var):
            name, where = node.name, node.span
        else:
            self.reporter.error(f"{what} needs the name of a reward model", node)
            return None
        model = self.scope.models.get(name)
        if model is not None:
            if model.kind in ("reward", "lookahead"):
                return name
            if model.kind == "generate":
                self.reporter.error(
                    f"`{name}` is a generate model, but {what} needs a reward model "
                    "(declared with `reward(...)`)",
                    where,
                )
            return None
        rewards = self.scope.value_models()
        if name in NODE_NAMES or name in self.scope.params:
            what_it_is = "a parameter" if name in self.scope.params else "a property of a node"
            self.reporter.error(
                f"`{name}` is {what_it_is}, but {what} needs a reward model's score"
                f"{suggestion(name, rewards)}",
                where,
            )
        elif not rewards:
            self.reporter.error(
                f"{what} reads a reward, but the program declares no reward model; "
                f"declare one: `model {name} = reward(aggregate = last)`",
                where,
            )
        else:
            self.reporter.error(f"unknown reward model `{name}`{suggestion(name, rewards)}", where)
        return None

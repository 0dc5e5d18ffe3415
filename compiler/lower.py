"""Lowering a checked program to the graph IR, with its parameters folded in.

The graph always has the same skeleton (one op of each kind the executor fetches with
`graph.only`), so lowering is mostly filling attribute records: every expression becomes an IR
expression in which parameters are constants, every model option a value. Values that only the
parameters make wrong (`children = n // m` with `-p m=0`) are reported here, at the expression.
Reward edges are derived from the attributes last (`draw_reward_edges`): wherever an op reads a
reward, that read is a barrier the runtime may speculate across.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from compiler import ir
from compiler.expr import (
    BUILTINS,
    Binary,
    Call,
    Const,
    Count,
    Counted,
    EvalError,
    Expr,
    Ref,
    Unary,
    evaluate,
)
from compiler.reads import is_constant, reward_producer, reward_reads
from spexlang import ast
from spexlang.checked import CheckedModel, CheckedProgram, CheckedRule, Value
from spexlang.diagnostics import CompileError, Diagnostic, Severity
from spexlang.internal_errors import pinned_to


@dataclass(frozen=True)
class Lowered:
    """A freshly lowered graph and, per op, the program node it came from (for diagnostics)."""

    graph: ir.StrategyGraph
    origins: Mapping[str, ast.Node]


@dataclass
class Lowerer:
    """Lowers one checked program, collecting the errors that parameter values cause."""

    program: CheckedProgram
    values: Mapping[str, Value]
    errors: list[Diagnostic] = field(default_factory=list)
    origins: dict[str, ast.Node] = field(default_factory=dict)

    @contextmanager
    def at(self, node: ast.Node) -> Iterator[None]:
        """Lower on behalf of `node`: an unexpected failure inside is reported at it."""
        with pinned_to(node):
            yield

    def error(self, message: str, node: ast.Node) -> None:
        self.errors.append(Diagnostic(Severity.ERROR, message, node.span, self.program.source))

    def given(self, node: ast.Expression) -> str:
        """' (with m = 0)': the parameter values behind an expression, for messages."""
        names = sorted(_params_read(node) & set(self.values))
        if not names:
            return ""
        return " (with " + ", ".join(f"{n} = {self.values[n]!r}" for n in names) + ")"

    # -- expressions

    def expr(self, node: ast.Expression) -> Expr:
        """The IR form of a checked expression with parameters replaced by their values."""
        if isinstance(node, ast.NumberLit | ast.StringLit | ast.BoolLit):
            return Const(node.value)
        if isinstance(node, ast.Var):
            if node.name in self.values:
                return Const(self.values[node.name])
            return Ref(node.name)
        if isinstance(node, ast.UnaryOp):
            return Unary(node.op, self.expr(node.operand))
        if isinstance(node, ast.BinaryOp):
            return Binary(node.op, self.expr(node.left), self.expr(node.right))
        if isinstance(node, ast.CallExpr):
            fn = node.function.text
            if fn == "count":
                target = node.arguments[0].value
                assert isinstance(target, ast.Var)
                return Count(Counted(target.name))
            assert fn in BUILTINS, fn
            return Call(fn, tuple(self.expr(a.value) for a in node.arguments))
        raise TypeError(f"cannot lower {type(node).__name__} as an expression")

    def checked_expr(self, node: ast.Expression, what: str) -> Expr:
        """Lower `node` and report, at it, any constant part the parameters make uncomputable."""
        lowered = self.expr(node)
        problem = _first_eval_problem(lowered)
        if problem is not None:
            self.error(f"{what} cannot be computed: {problem}{self.given(node)}", node)
        return lowered

    def constant(self, node: ast.Expression, what: str) -> Value | None:
        lowered = self.checked_expr(node, what)
        if not is_constant(lowered):
            return None
        try:
            return evaluate(lowered, {})
        except EvalError:
            return None  # already reported by checked_expr

    def at_least(
        self, node: ast.Expression | None, what: str, low: float, strict: bool
    ) -> Expr | None:
        """Lower an argument that, when constant, must be >= low (> low if strict)."""
        if node is None:
            return None
        lowered = self.checked_expr(node, what)
        if is_constant(lowered) and not _first_eval_problem(lowered):
            value = evaluate(lowered, {})
            assert isinstance(value, int | float)
            if value < low or (strict and value == low):
                bound = f"greater than {low:g}" if strict else f"at least {low:g}"
                self.error(f"{what} must be {bound}, but it is {value!r}{self.given(node)}", node)
        return lowered

    # -- roles

    def sampling(self, model: CheckedModel) -> ir.Sampling:
        with self.at(model.decl):
            options: dict[str, Value] = {}
            for key, node in model.options.items():
                value = self.constant(node, f"`{key}`")
                if value is not None:
                    options[key] = value
            defaults = ir.Sampling()
            temperature = float(options.get("temperature", defaults.temperature))
            top_p = float(options.get("top_p", defaults.top_p))
            top_k = int(options.get("top_k", defaults.top_k))
            max_tokens = int(options.get("max_tokens", defaults.max_tokens))
            checks = (
                ("temperature", temperature >= 0, "at least 0"),
                ("top_p", 0 < top_p <= 1, "in (0, 1]"),
                ("top_k", top_k == -1 or top_k >= 1, "-1 (off) or at least 1"),
                ("max_tokens", max_tokens >= 1, "at least 1"),
            )
            for key, ok, wanted in checks:
                if not ok:
                    self.error(
                        f"`{key}` must be {wanted}, but it is {options[key]!r}"
                        f"{self.given(model.options[key])}",
                        model.options[key],
                    )
            stop = (self.program.step, *[s for s in model.stop if s != self.program.step])
            return ir.Sampling(temperature, top_p, top_k, max_tokens, stop)

    def roles(self) -> tuple[ir.Role, ...]:
        out: list[ir.Role] = []
        for model in self.program.models:
            if model.kind == "generate":
                out.append(ir.Role(model.name, ir.RoleKind.GENERATE, sampling=self.sampling(model)))
            else:
                aggregate = ir.Aggregate(model.aggregate or "last")
                out.append(ir.Role(model.name, ir.RoleKind.REWARD, aggregate=aggregate))
        return tuple(out)

    # -- ops

    def select_attrs(self, rule: CheckedRule) -> ir.SelectAttrs:
        with self.at(rule.node):
            a = rule.arguments

            def arg(key: str, what: str, low: float = 1, strict: bool = False) -> Expr | None:
                return self.at_least(a.get(key), what, low, strict)

            return ir.SelectAttrs(
                rule=ir.SelectRule(rule.rule),
                scope=ir.SelectScope.SUBTREE if rule.per_subtree else ir.SelectScope.LAYER,
                reward_role=rule.reward_role,
                children=arg("children", "`children`"),
                k=arg("k", "the K of top(K, ...)"),
                temperature=arg("temperature", "the temperature", 0, strict=True),
                budget=arg("budget", "the budget", 0),
                keep_cost=arg("keep_cost", "`keep_cost`", 0),
                exploration=arg("exploration", "the exploration constant", 0),
                prune_below=self.at_least(
                    a.get("prune_below"), "the prune bound", float("-inf"), False
                ),
            )

    def lower(self) -> ir.StrategyGraph:
        p = self.program
        search = p.search
        graph = ir.StrategyGraph(
            strategy=p.name,
            params=tuple(ir.Param(q.name, q.type.value, self.values[q.name]) for q in p.params),
            roles=self.roles(),
        )

        def add(op: ir.Op, origin: ast.Node) -> ir.Op:
            self.origins[op.name] = origin
            return graph.add_op(op)

        question = add(ir.Op("question", ir.OpKind.INPUT, ir.InputAttrs()), p.program.header)
        prompt_decl = next(d for d in p.program.declarations if isinstance(d, ast.PromptDecl))
        root = add(ir.Op("root", ir.OpKind.PROMPT, ir.PromptAttrs(p.prompt, p.step)), prompt_decl)
        with self.at(search.decl):
            root_children = self.at_least(search.root_children, "`start children`", 1, False)
        kind = ir.SearchKind(search.kind)
        frontier = add(
            ir.Op("frontier", ir.OpKind.SEARCH, ir.SearchAttrs(kind, root_children)), search.decl
        )
        role = graph.role(search.role)
        assert role.sampling is not None
        gen = add(
            ir.Op("gen", ir.OpKind.GENERATE, ir.GenerateAttrs(role.name, role.sampling)),
            p.model(search.role).decl,
        )
        graph.add_edge(question, root)
        graph.add_edge(root, frontier)
        graph.add_edge(frontier, gen)
        for r in graph.roles:
            if r.kind is ir.RoleKind.REWARD and r.aggregate is not None:
                score = add(
                    ir.Op(f"score_{r.name}", ir.OpKind.REWARD, ir.RewardAttrs(r.name, r.aggregate)),
                    p.model(r.name).decl,
                )
                graph.add_edge(gen, score)
        with self.at(search.leaf):
            leaf_attrs = ir.LeafAttrs(self.checked_expr(search.leaf, "the leaf condition"))
        leaf = add(ir.Op("leaf", ir.OpKind.LEAF_TEST, leaf_attrs), search.leaf)
        graph.add_edge(gen, leaf)
        last = leaf
        if search.backup is not None:
            backup_attrs = ir.BackupAttrs(search.backup.role.text, search.backup.source)
            last = add(ir.Op("backup", ir.OpKind.BACKUP, backup_attrs), search.backup)
            graph.add_edge(leaf, last)
        select = add(
            ir.Op("select", ir.OpKind.SELECT, self.select_attrs(search.rule)), search.rule.node
        )
        # The selection takes the new nodes from the leaf test; a UCT selection also reads what the
        # backup carried up, over the REWARD edge `mark_reward_edges` draws.
        graph.add_edge(leaf, select)
        graph.add_edge(select, frontier, ir.EdgeKind.LOOP)
        with self.at(search.until):
            stop_attrs = ir.StopAttrs(self.checked_expr(search.until, "the `until` condition"))
        stop = add(ir.Op("stop", ir.OpKind.STOP_TEST, stop_attrs), search.until)
        graph.add_edge(last, stop)
        answer_attrs = ir.AnswerAttrs(
            method=ir.AnswerMethod(p.answer.method),
            pattern=p.answer_pattern,
            equivalence=ir.Equivalence(p.equivalence),
            reward_role=p.answer.reward_role,
        )
        answer = add(ir.Op("answer", ir.OpKind.ANSWER, answer_attrs), p.answer.decl)
        graph.add_edge(stop, answer)
        draw_reward_edges(graph)
        return graph


def draw_reward_edges(graph: ir.StrategyGraph) -> list[str]:
    """Draw a speculative REWARD edge into every op that reads reward values.

    This is where the compiler finds the reward barriers: a leaf test reading `prm`, a selection
    ranking by `prm`, an answer weighted by `prm`, a backup carrying `prm` up, and a UCT selection
    reading what the backup carried. Pre: a REWARD op exists for every role read (and a BACKUP op
    for UCT). Post: each such reader has a REWARD edge from its producer. Returns the added edges
    as `~%src -> %dst`; a second call adds none.
    """
    added: list[str] = []
    for op in list(graph.ops()):
        for role in sorted(reward_reads(op)):
            src = reward_producer(graph, op, role)
            if graph.graph.has_edge(src, op.name):
                continue
            graph.add_edge(src, op.name, ir.EdgeKind.REWARD)
            added.append(f"~%{src} -> %{op.name}")
    return added


def _params_read(node: ast.Expression) -> set[str]:
    """Names read as values by `node` (the targets of count(...) are not values)."""
    if isinstance(node, ast.Var):
        return {node.name}
    if isinstance(node, ast.UnaryOp):
        return _params_read(node.operand)
    if isinstance(node, ast.BinaryOp):
        return _params_read(node.left) | _params_read(node.right)
    if isinstance(node, ast.CallExpr) and node.function.text != "count":
        out: set[str] = set()
        for a in node.arguments:
            out |= _params_read(a.value)
        return out
    return set()


def _first_eval_problem(expr: Expr) -> str | None:
    """Why some constant part of `expr` cannot be evaluated (division by zero, log(0)), if so."""
    if is_constant(expr):
        try:
            evaluate(expr, {})
        except EvalError as e:
            return str(e)
        except (TypeError, ArithmeticError) as e:
            return f"{expr}: {e}"
        return None
    if isinstance(expr, Unary):
        return _first_eval_problem(expr.operand)
    if isinstance(expr, Binary):
        return _first_eval_problem(expr.left) or _first_eval_problem(expr.right)
    if isinstance(expr, Call):
        for a in expr.args:
            found = _first_eval_problem(a)
            if found:
                return found
    return None


def lower(program: CheckedProgram, values: Mapping[str, Value]) -> Lowered:
    """Lower `program` with parameter `values`; raises CompileError for value-made errors.

    Pre: `program` passed the checker; `values` holds a value of the declared type for every
    parameter. Post: a lint-clean graph with one REWARD op per declared reward role (read or
    not) and a speculative REWARD edge into every op that reads reward values.
    """
    lowerer = Lowerer(program, values)
    with pinned_to(program.search.decl):
        graph = lowerer.lower()
    if lowerer.errors:
        raise CompileError(lowerer.errors)
    return Lowered(graph, dict(lowerer.origins))

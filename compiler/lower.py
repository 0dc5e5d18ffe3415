"""Lowering a checked program to the graph IR, with its parameters folded in.

The graph has one skeleton (input, prompt, search head, generate, one reward op per reward role,
lookahead ops, leaf test, a chain of select stages, stop test, answer), so lowering is mostly
filling attribute records: every expression becomes an IR expression in which parameters are
constants, every model option a value, every rule argument the registry's (compiler/rules.py)
with its defaults. Values that only the parameters make wrong (`children = n // m` with `-p m=0`,
a budget `width - count(leaves)` that is 0 when the search starts) are reported here, at the
expression. Every op records the span it came from and the span of each of its expressions.
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
    Share,
    Unary,
    evaluate,
)
from compiler.reads import is_constant, reward_producer, reward_reads
from compiler.rules import RULES, ArgType
from spexlang import ast
from spexlang.checked import CheckedModel, CheckedProgram, CheckedRule, Value
from spexlang.diagnostics import CompileError, Diagnostic, Severity, Span
from spexlang.internal_errors import pinned_to

_AT_START = {c: 0 for c in Counted}  # every tally when a search starts


_SHIPPED = frozenset(r.value for r in ir.SelectRule)


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
            if fn == "share":
                weight = next((a.value for a in node.arguments if a.keyword is not None), None)
                assert weight is None or isinstance(weight, ast.Var)
                return Share(weight.name if weight is not None else None)
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

    def at_start(
        self,
        node: ast.Expression | None,
        lowered: Expr | None,
        what: str,
        low: float,
        depth: int,
        strict: bool = False,
    ) -> None:
        """Report an argument that the parameters make invalid when the search starts: every
        count 0, `depth` the depth of the first nodes the rule runs on. Only expressions that read
        a parameter are judged here (the rest fail, located, at run time)."""
        if node is None or lowered is None or not self.given(node) or is_constant(lowered):
            return
        if self.errors and self.errors[-1].span == node.span:
            return  # already reported for this expression
        try:
            value = evaluate(lowered, {"depth": depth}, _AT_START, {"": 0.0})
        except EvalError as e:
            self.error(
                f"{what} cannot be computed when the search starts: {e}{self.given(node)}", node
            )
            return
        except (TypeError, ArithmeticError, KeyError):
            return  # it reads something only a node has: the run time judges it
        if isinstance(value, int | float) and (value < low or (strict and value == low)):
            bound = f"greater than {low:g}" if strict else f"at least {low:g}"
            self.error(
                f"{what} is {value!r} when the search starts{self.given(node)}; it must be {bound}",
                node,
            )

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

    def judge(self, model: CheckedModel) -> ir.Judge | None:
        j = model.judge
        if j is None:
            return None
        with self.at(j.node):
            verdicts = []
            for word, node in j.verdicts:
                score = self.constant(node, f"the score of `{word}`")
                verdicts.append(ir.Verdict(word, float(score) if score is not None else 0.0))
            counts: dict[str, int] = {}
            for key, node_or_none, default in (
                ("samples", j.samples, 1),
                ("max_tokens", j.max_tokens, 8),
            ):
                counts[key] = default
                if node_or_none is not None:
                    value = self.constant(node_or_none, f"`{key}`")
                    if isinstance(value, int) and value < 1:
                        self.error(
                            f"`{key}` must be at least 1, but it is {value}"
                            f"{self.given(node_or_none)}",
                            node_or_none,
                        )
                    elif isinstance(value, int):
                        counts[key] = value
            return ir.Judge(
                j.generator,
                j.prompt,
                ir.VerdictRead(j.read),
                tuple(verdicts),
                counts["samples"],
                counts["max_tokens"],
            )

    def roles(self) -> tuple[ir.Role, ...]:
        out: list[ir.Role] = []
        for model in self.program.models:
            if model.kind == "generate":
                out.append(ir.Role(model.name, ir.RoleKind.GENERATE, sampling=self.sampling(model)))
            elif model.kind == "reward":
                aggregate = ir.Aggregate(model.aggregate or "last")
                out.append(
                    ir.Role(
                        model.name,
                        ir.RoleKind.REWARD,
                        aggregate=aggregate,
                        judge=self.judge(model),
                    )
                )
        return tuple(out)

    # -- ops

    def select_attrs(
        self, rule: CheckedRule, stage: int, last: bool, children: ast.Expression | None
    ) -> tuple[ir.SelectAttrs, tuple[tuple[str, Span], ...]]:
        """One selection stage: the registry's arguments, defaults filled in, with their spans."""
        spec = RULES[rule.rule]
        start = self.start_depth()
        with self.at(rule.node):
            args: list[ir.RuleArgument] = []
            spans: list[tuple[str, Span]] = []
            for arg in spec.args:
                node = rule.arguments.get(arg.name)
                if node is None:
                    if arg.default is not None:
                        args.append(ir.RuleArgument(arg.name, Const(arg.default)))
                    continue
                spans.append((arg.name, node.span))
                if arg.type is ArgType.VALUE:
                    assert isinstance(node, ast.Var)
                    args.append(ir.RuleArgument(arg.name, Ref(node.name)))
                    continue
                what = f"`{arg.doc}`"
                lowered: Expr | None = self.checked_expr(node, what)
                if arg.minimum is not None:
                    lowered = self.at_least(node, what, arg.minimum, arg.strict)
                assert lowered is not None
                if arg.start_minimum is not None:
                    self.at_start(node, lowered, what, arg.start_minimum, start)
                elif arg.minimum is not None:
                    self.at_start(node, lowered, what, arg.minimum, start, arg.strict)
                args.append(ir.RuleArgument(arg.name, lowered))
            lowered_children: Expr | None = None
            if last and children is not None:
                lowered_children = self.at_least(children, "`children`", 1, False)
                self.at_start(children, lowered_children, "`children`", 1, start)
                spans.append(("children", children.span))
            attrs = ir.SelectAttrs(
                rule=ir.SelectRule(spec.name) if spec.name in _SHIPPED else spec.name,
                scope=ir.SelectScope.SUBTREE if rule.per_subtree else ir.SelectScope.LAYER,
                reward_role=rule.reward_role,
                children=lowered_children,
                args=tuple(args),
                stage=stage,
                last=last,
            )
            return attrs, tuple(spans)

    def start_depth(self) -> int:
        """The depth of the first nodes the selection runs on: the root's (0), or its children's
        (1) in a layered search whose `start` clause expands the root."""
        search = self.program.search
        return 1 if search.kind == "layered" and search.root_children is not None else 0

    def lookahead_ops(self, graph: ir.StrategyGraph) -> list[tuple[ir.Op, ast.Node]]:
        out: list[tuple[ir.Op, ast.Node]] = []
        for model in self.program.models:
            look = model.lookahead
            if look is None:
                continue
            with self.at(model.decl):
                steps = self.at_least(look.steps, "`steps`", 0, False)
                assert steps is not None
                policy = graph.role(look.policy)
                assert policy.sampling is not None
                attrs = ir.LookaheadAttrs(
                    model.name, look.policy, policy.sampling, look.reward_role, steps
                )
                op = ir.Op(
                    f"lookahead_{model.name}",
                    ir.OpKind.LOOKAHEAD,
                    attrs,
                    model.decl.span,
                    (("steps", look.steps.span),),
                )
                out.append((op, model.decl))
        return out

    def lower(self) -> ir.StrategyGraph:
        p = self.program
        search = p.search
        graph = ir.StrategyGraph(
            strategy=p.name,
            params=tuple(ir.Param(q.name, q.type.value, self.values[q.name]) for q in p.params),
            roles=self.roles(),
            source=p.source,
        )

        def add(op: ir.Op, origin: ast.Node, spans: tuple[tuple[str, Span], ...] = ()) -> ir.Op:
            self.origins[op.name] = origin
            located = ir.Op(op.name, op.kind, op.attrs, op.span or origin.span, spans)
            return graph.add_op(located)

        question = add(ir.Op("question", ir.OpKind.INPUT, ir.InputAttrs()), p.program.header)
        prompt_decl = next(d for d in p.program.declarations if isinstance(d, ast.PromptDecl))
        root = add(ir.Op("root", ir.OpKind.PROMPT, ir.PromptAttrs(p.prompt, p.step)), prompt_decl)
        with self.at(search.decl):
            root_children = self.at_least(search.root_children, "`start children`", 1, False)
            self.at_start(search.root_children, root_children, "`start children`", 1, 0)
        kind = ir.SearchKind(search.kind)
        head_spans = (("root_children", search.root_children.span),) if search.root_children else ()
        frontier = add(
            ir.Op("frontier", ir.OpKind.SEARCH, ir.SearchAttrs(kind, root_children)),
            search.decl,
            head_spans,
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
                    ir.Op(
                        f"score_{r.name}",
                        ir.OpKind.REWARD,
                        ir.RewardAttrs(r.name, r.aggregate, r.judge),
                    ),
                    p.model(r.name).decl,
                )
                graph.add_edge(gen, score)
        for op, origin in self.lookahead_ops(graph):
            graph.add_edge(gen, add(op, origin, op.expr_spans))
        with self.at(search.leaf):
            leaf_attrs = ir.LeafAttrs(self.checked_expr(search.leaf, "the leaf condition"))
        leaf = add(
            ir.Op("leaf", ir.OpKind.LEAF_TEST, leaf_attrs),
            search.leaf,
            (("condition", search.leaf.span),),
        )
        graph.add_edge(gen, leaf)
        last = leaf
        if search.backup is not None:
            backup_attrs = ir.BackupAttrs(search.backup.role.text, search.backup.source)
            last = add(ir.Op("backup", ir.OpKind.BACKUP, backup_attrs), search.backup)
            graph.add_edge(leaf, last)
        # The selection takes the new nodes from the leaf test, stage after stage; a UCT
        # selection also reads what the backup carried up, over the REWARD edge
        # `draw_reward_edges` draws.
        previous = leaf
        final = len(search.stages) - 1
        for i, stage in enumerate(search.stages):
            attrs, spans = self.select_attrs(stage, i, i == final, search.children)
            name = "select" if i == final else f"select_{i + 1}"
            op = add(ir.Op(name, ir.OpKind.SELECT, attrs), stage.node, spans)
            graph.add_edge(previous, op)
            previous = op
        graph.add_edge(previous, frontier, ir.EdgeKind.LOOP)
        with self.at(search.until):
            stop_attrs = ir.StopAttrs(self.checked_expr(search.until, "the `until` condition"))
        stop = add(
            ir.Op("stop", ir.OpKind.STOP_TEST, stop_attrs),
            search.until,
            (("condition", search.until.span),),
        )
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
    if isinstance(node, ast.CallExpr) and node.function.text not in ("count", "share"):
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

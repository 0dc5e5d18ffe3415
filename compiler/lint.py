"""`lint(graph)`: the invariants every compiled strategy graph must satisfy.

Lowering and every pass must leave a graph that lints clean; the tests run `lint` after each pass.
A non-empty result means a compiler bug, never a user mistake (those are diagnostics earlier).
"""

from __future__ import annotations

import re

import networkx as nx

from compiler import ir
from compiler.expr import Expr, Ref, counts_read, refs, shares_read
from compiler.reads import NODE_REFS, is_constant, reward_producer, reward_reads, roles_called
from compiler.rules import RULES, ArgType

EXACTLY_ONE = (
    ir.OpKind.INPUT,
    ir.OpKind.PROMPT,
    ir.OpKind.SEARCH,
    ir.OpKind.GENERATE,
    ir.OpKind.LEAF_TEST,
    ir.OpKind.STOP_TEST,
    ir.OpKind.ANSWER,
)
_PRODUCERS = (ir.OpKind.REWARD, ir.OpKind.BACKUP, ir.OpKind.LOOKAHEAD)


def _structure(g: ir.StrategyGraph, problems: list[str]) -> None:
    names = [r.name for r in g.roles]
    if len(set(names)) != len(names):
        problems.append(f"role names are not unique: {names}")
    params = [p.name for p in g.params]
    if len(set(params)) != len(params):
        problems.append(f"parameter names are not unique: {params}")
    for name, data in g.graph.nodes(data=True):
        op = data.get("op")
        if not isinstance(op, ir.Op):
            problems.append(f"node {name!r} holds no Op")
            continue
        if op.name != name:
            problems.append(f"op %{op.name} is stored under the name {name!r}")
        expected = ir.ATTRS_FOR[op.kind]
        if type(op.attrs) is not expected:
            problems.append(
                f"%{name}: {op.kind.value} needs {expected.__name__}, has {type(op.attrs).__name__}"
            )
    for u, v, data in g.graph.edges(data=True):
        kind = data.get("kind")
        if not isinstance(kind, ir.EdgeKind):
            problems.append(f"edge %{u} -> %{v} has no EdgeKind")
        elif data.get("speculative") is not (kind is ir.EdgeKind.REWARD):
            problems.append(f"edge %{u} -> %{v}: speculative must be true exactly on REWARD edges")


def _counts(g: ir.StrategyGraph, problems: list[str]) -> None:
    for kind in EXACTLY_ONE:
        n = sum(1 for _, d in g.graph.nodes(data="op") if isinstance(d, ir.Op) and d.kind is kind)
        if n != 1:
            problems.append(f"expected exactly one {kind.value} op, found {n}")


def _shape(g: ir.StrategyGraph, problems: list[str]) -> bool:
    """Edges and reachability; False when the graph (less LOOP edges) has a cycle."""
    dag = nx.DiGraph()
    dag.add_nodes_from(g.graph.nodes)
    dag.add_edges_from(
        (u, v) for u, v, k in g.graph.edges(data="kind") if k is not ir.EdgeKind.LOOP
    )
    acyclic = bool(nx.is_directed_acyclic_graph(dag))
    if not acyclic:
        problems.append("the graph without LOOP edges has a cycle")
    loops = [(u, v) for u, v, k in g.graph.edges(data="kind") if k is ir.EdgeKind.LOOP]
    for u, v in loops:
        if g.op(u).kind is not ir.OpKind.SELECT or g.op(v).kind is not ir.OpKind.SEARCH:
            problems.append(f"LOOP edge %{u} -> %{v} must run from SELECT to SEARCH")
        elif u != "select":
            problems.append(f"LOOP edge %{u} -> %{v} must leave the last stage, %select")
    if len(loops) != 1:
        problems.append(f"expected one LOOP edge closing the search, found {len(loops)}")
    inputs = [
        n for n, d in g.graph.nodes(data="op") if isinstance(d, ir.Op) and d.kind is ir.OpKind.INPUT
    ]
    if len(inputs) == 1:
        unreachable = set(g.graph.nodes) - nx.descendants(g.graph, inputs[0]) - {inputs[0]}
        for name in sorted(unreachable):
            problems.append(f"%{name} is not reachable from the input")
    for u, v, k in g.graph.edges(data="kind"):
        if k is ir.EdgeKind.REWARD and g.op(u).kind not in _PRODUCERS:
            problems.append(f"REWARD edge %{u} -> %{v} must leave a REWARD, BACKUP or LOOKAHEAD op")
    return acyclic


def _roles(g: ir.StrategyGraph, problems: list[str]) -> None:
    kinds = {r.name: r.kind for r in g.roles}

    def need(role: str | None, kind: ir.RoleKind, where: str) -> None:
        if role is None:
            return
        if role not in kinds:
            problems.append(f"{where} names the undeclared role {role!r}")
        elif kinds[role] is not kind:
            problems.append(f"{where} needs a {kind.value} role, {role!r} is {kinds[role].value}")

    looks = {
        op.attrs.name
        for op in g.ops_of(ir.OpKind.LOOKAHEAD)
        if isinstance(op.attrs, ir.LookaheadAttrs)
    }
    seen_rewards: set[str] = set()
    for op in g.ops():
        a = op.attrs
        if isinstance(a, ir.LookaheadAttrs):
            need(a.policy, ir.RoleKind.GENERATE, f"%{op.name}")
            need(a.reward_role, ir.RoleKind.REWARD, f"%{op.name}")
            if a.name in kinds:
                problems.append(f"%{op.name}: the lookahead value {a.name!r} is also a role")
            if op.name != f"lookahead_{a.name}":
                problems.append(f"%{op.name}: a LOOKAHEAD op is named lookahead_<value>")
            if not is_constant(a.steps):
                problems.append(f"%{op.name}: steps must be a constant")
        if isinstance(a, ir.RewardAttrs) and a.judge is not None:
            need(a.judge.generator, ir.RoleKind.GENERATE, f"%{op.name} judge")
            if a.judge != next((r.judge for r in g.roles if r.name == a.role), None):
                problems.append(f"%{op.name}: its judge differs from role {a.role!r}'s")
        for role in roles_called(op):
            if role not in kinds:
                problems.append(f"%{op.name} calls the undeclared role {role!r}")
        if isinstance(a, ir.GenerateAttrs):
            need(a.role, ir.RoleKind.GENERATE, f"%{op.name}")
            if not a.sampling.stop:
                problems.append(f"%{op.name}: sampling.stop must start with the step delimiter")
        elif isinstance(a, ir.RewardAttrs):
            need(a.role, ir.RoleKind.REWARD, f"%{op.name}")
            if a.role in seen_rewards:
                problems.append(f"two REWARD ops for the role {a.role!r}")
            seen_rewards.add(a.role)
            if op.name != f"score_{a.role}":
                problems.append(f"%{op.name}: a REWARD op is named score_<role>")
        for role in reward_reads(op):
            if role not in looks:
                need(role, ir.RoleKind.REWARD, f"%{op.name}")
            producer = reward_producer(g, op, role)
            if producer not in g.graph:
                problems.append(f"%{op.name} reads {role!r} but %{producer} does not exist")
            elif not _is_reward_edge(g, producer, op.name):
                problems.append(f"%{op.name} reads {role!r} without a REWARD edge from %{producer}")


def _is_reward_edge(g: ir.StrategyGraph, src: str, dst: str) -> bool:
    return g.graph.has_edge(src, dst) and g.graph.edges[src, dst]["kind"] is ir.EdgeKind.REWARD


def _attrs(g: ir.StrategyGraph, problems: list[str]) -> None:
    prompt = g.only(ir.OpKind.PROMPT).attrs if len(g.ops_of(ir.OpKind.PROMPT)) == 1 else None
    search = g.only(ir.OpKind.SEARCH).attrs if len(g.ops_of(ir.OpKind.SEARCH)) == 1 else None
    for op in g.ops():
        a = op.attrs
        if isinstance(a, ir.GenerateAttrs) and isinstance(prompt, ir.PromptAttrs):
            if a.sampling.stop[:1] != (prompt.step_delimiter,):
                problems.append(f"%{op.name}: sampling.stop must start with the step delimiter")
        if isinstance(a, ir.PromptAttrs) and "{question}" not in a.template:
            problems.append(f"%{op.name}: the template has no {{question}}")
        if isinstance(a, ir.AnswerAttrs):
            try:
                re.compile(a.pattern)
            except re.error:
                problems.append(f"%{op.name}: the answer pattern does not compile")
            if (a.method is ir.AnswerMethod.MAJORITY) != (a.reward_role is None):
                problems.append(f"%{op.name}: only a majority answer reads no reward")
        if isinstance(a, ir.LeafAttrs):
            _expr_reads(a.condition, f"%{op.name}", counts=False, node=True, problems=problems)
        if isinstance(a, ir.StopAttrs):
            _expr_reads(
                a.condition, f"%{op.name}", counts=True, node=False, problems=problems, shares=True
            )
        if isinstance(a, ir.SelectAttrs):
            _select(op.name, a, search, problems)
        if isinstance(a, ir.SearchAttrs) and a.root_children is not None:
            _expr_reads(a.root_children, f"%{op.name}", counts=True, node=False, problems=problems)
    has_backup = bool(g.ops_of(ir.OpKind.BACKUP))
    is_rollout = isinstance(search, ir.SearchAttrs) and search.kind is ir.SearchKind.ROLLOUT
    if has_backup != is_rollout or len(g.ops_of(ir.OpKind.BACKUP)) > 1:
        problems.append("a rollout search has exactly one BACKUP op; other searches none")
    _chain(g, problems)


def _chain(g: ir.StrategyGraph, problems: list[str]) -> None:
    """The SELECT ops form one chain from the leaf test (or backup) to %select, stages in order."""
    stages = g.ops_of(ir.OpKind.SELECT)
    if not stages:
        problems.append("expected at least one select op, found 0")
        return
    by_stage = sorted(
        stages, key=lambda op: op.attrs.stage if isinstance(op.attrs, ir.SelectAttrs) else 0
    )
    for i, op in enumerate(by_stage):
        a = op.attrs
        assert isinstance(a, ir.SelectAttrs)
        expected_name = "select" if i == len(by_stage) - 1 else f"select_{i + 1}"
        if a.stage != i or op.name != expected_name or a.last != (i == len(by_stage) - 1):
            problems.append(f"%{op.name}: select stages are select_1, select_2, ..., select")
        if i > 0 and not g.graph.has_edge(by_stage[i - 1].name, op.name):
            problems.append(f"%{op.name} does not read the stage before it")
        if len(by_stage) > 1 and a.rule in RULES and not RULES[a.rule].chains:
            problems.append(f"%{op.name}: rule {a.rule} cannot be a stage of a pipeline")
        if i != len(by_stage) - 1 and a.rule in RULES and RULES[a.rule].allocates is not None:
            problems.append(f"%{op.name}: an allocating rule must be the last stage")
    scopes = {op.attrs.scope for op in stages if isinstance(op.attrs, ir.SelectAttrs)}
    if len(scopes) > 1:
        problems.append("the select stages of one selection share one scope")


def _select(name: str, a: ir.SelectAttrs, search: ir.OpAttrs | None, problems: list[str]) -> None:
    spec = RULES.get(a.rule)
    if spec is None:
        problems.append(f"%{name}: {a.rule!r} is not a rule of compiler/rules.py")
        return
    if isinstance(search, ir.SearchAttrs) and search.kind not in spec.searches:
        problems.append(f"%{name}: rule {a.rule} does not fit a {search.kind.value} search")
    given = [arg.name for arg in a.args]
    if len(set(given)) != len(given):
        problems.append(f"%{name}: an argument is given twice: {given}")
    for declared_arg in spec.args:
        if declared_arg.name not in given and (
            declared_arg.required or declared_arg.default is not None
        ):
            problems.append(f"%{name}: rule {a.rule} needs {declared_arg.name}")
    allocates = spec.allocates is not None
    if a.last and not allocates and a.children is None:
        problems.append(f"%{name}: rule {a.rule} needs children")
    if (allocates or not a.last) and a.children is not None:
        problems.append(f"%{name}: only the last stage of a non-allocating rule has children")
    values = [arg for arg in spec.args if arg.type is ArgType.VALUE]
    ranked = next((v.name for v in values if a.arg(v.name) is not None), None)
    ranked_ref = a.arg(ranked) if ranked else None
    expected_role = ranked_ref.name if isinstance(ranked_ref, Ref) else None
    if a.reward_role != expected_role:
        problems.append(f"%{name}: reward_role must be the value rule {a.rule} ranks by")
    if a.scope is ir.SelectScope.SUBTREE and not spec.per_subtree:
        problems.append(f"%{name}: rule {a.rule} does not apply per subtree")
    if a.children is not None:
        _expr_reads(a.children, f"%{name}.children", counts=True, node=False, problems=problems)
    for arg in a.args:
        declared = spec.arg(arg.name)
        where = f"%{name}.{arg.name}"
        if declared is None:
            problems.append(f"{where}: rule {a.rule} has no such argument")
        elif declared.type is ArgType.VALUE:
            if not isinstance(arg.value, Ref):
                problems.append(f"{where} must name a value role")
        elif declared.type is ArgType.CONDITION:
            _expr_reads(arg.value, where, counts=False, node=True, problems=problems)
        else:
            _expr_reads(arg.value, where, counts=True, node=False, problems=problems)


def _expr_reads(
    expr: Expr,
    where: str,
    counts: bool,
    node: bool,
    problems: list[str],
    shares: bool = False,
) -> None:
    if shares_read(expr) and not shares:
        problems.append(f"{where} reads share(...), which only the stop test can")
    names = refs(expr) - ({s.weight for s in shares_read(expr) if s.weight} if shares else set())
    allowed = NODE_REFS if node else frozenset({"depth"})
    extra = names - allowed
    if not node and extra:
        problems.append(f"{where} reads {sorted(extra)}, which it cannot")
    if counts_read(expr) and not counts:
        problems.append(f"{where} reads count(...), which it cannot")


def lint(graph: ir.StrategyGraph) -> list[str]:
    """Every broken invariant of `graph`, as sentences; empty when the graph is well formed."""
    problems: list[str] = []
    _structure(graph, problems)
    if problems:
        return problems  # the rest assumes every node holds a well-typed Op
    _counts(graph, problems)
    if not _shape(graph, problems):
        return problems  # the rest walks the ops in topological order
    _roles(graph, problems)
    _attrs(graph, problems)
    return problems

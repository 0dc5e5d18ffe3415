"""Reading a compiled graph back: the JSON of `spex compile -o g.json` -> the same StrategyGraph.

The graph is the program: `spex run g.json` runs what `spex run prog.spx` runs. The reader is the
inverse of compiler/export_json.py and is generic over the IR's dataclasses: each value is decoded
by the type its field declares (an Enum from its value, a dataclass field by field, a tuple item
by item, an expression from its tree), and an op's attributes by the record type its kind names
in `ir.ATTRS_FOR`, so a new op kind, attribute or IR record needs no change here. Only the
expression trees have a hand-written shape (one entry per tree form in `_EXPR_FORMS`).

Anything wrong with the file (not JSON, another IR version, a missing or mistyped field, an edge
to an unknown op, a graph that fails lint) is a `GraphFormatError` (a UserError) that says where
in the file it is; parameters cannot be changed (they were folded in when the graph was compiled).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

from compiler import expr as expr_module
from compiler import ir
from compiler.lint import lint
from compiler.render import expr_text
from spexlang.diagnostics import UserError

_NONE = type(None)
_GRAPH_FIELDS_FROM_FILE = ("graph",)  # StrategyGraph fields that are not top-level keys


class GraphFormatError(UserError):
    """The file is not a compiled spex graph this version of spex can read."""


def looks_like_graph_json(path: str | Path) -> bool:
    """A `.json` file, or any file whose first non-blank character opens a JSON object (a .spx
    program never starts with `{`)."""
    p = Path(path)
    if p.suffix.lower() == ".json":
        return True
    try:
        with p.open("rb") as f:
            head = f.read(256).lstrip()
    except OSError:
        return False
    return head.startswith(b"{")


def read_graph(path: str | Path) -> ir.StrategyGraph:
    """Load a compiled graph from a file; GraphFormatError (or UserError) when it cannot be."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{p}: no such file") from None
    except UnicodeDecodeError:
        raise GraphFormatError(f"{p}: not a UTF-8 text file") from None
    except OSError as e:
        raise UserError(f"{p}: cannot read it ({e.strerror})") from None
    return from_json(text, str(p))


def from_json(text: str, name: str = "<graph>") -> ir.StrategyGraph:
    """A StrategyGraph from the text `export_json.to_json` wrote."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise GraphFormatError(f"{name}: not a compiled graph: invalid JSON ({e})") from None
    return from_data(data, name)


def from_data(data: Any, name: str = "<graph>") -> ir.StrategyGraph:
    """A StrategyGraph from the dict `export_json.to_data` returns."""
    if not isinstance(data, dict):
        raise GraphFormatError(f"{name}: not a compiled graph: the top level is not an object")
    version = data.get("version")
    if version != ir.IR_VERSION:
        raise GraphFormatError(
            f"{name}: graph format version {version!r}, but this spex reads version "
            f"{ir.IR_VERSION}: compile the .spx program again with this spex (spex compile)"
        )
    reader = _Reader(name)
    graph = reader.graph(data)
    problems = lint(graph)
    if problems:
        raise GraphFormatError(f"{name}: not a valid strategy graph: {'; '.join(problems)}")
    return graph


class _Reader:
    """Decodes one file; `where` names the place in the file for error messages."""

    def __init__(self, name: str) -> None:
        self.name = name

    def fail(self, where: str, message: str) -> GraphFormatError:
        return GraphFormatError(f"{self.name}: not a compiled graph: {where}: {message}")

    # -- the graph ---------------------------------------------------------------------------

    def graph(self, data: dict[str, Any]) -> ir.StrategyGraph:
        for key in ("nodes", "edges"):
            if not isinstance(data.get(key), list):
                raise self.fail(key, "missing, or not a list")
        if data.get("directed") is False or data.get("multigraph") is True:
            raise self.fail("directed", "a strategy graph is a directed simple graph")
        values = self.fields(ir.StrategyGraph, data, "", skip=_GRAPH_FIELDS_FROM_FILE)
        graph = ir.StrategyGraph(**values)
        for i, node in enumerate(data["nodes"]):
            op = self.op(node, f"nodes[{i}]")
            if op.name in graph.graph:
                raise self.fail(f"nodes[{i}]", f"a second op named %{op.name}")
            graph.add_op(op)
        for i, edge in enumerate(data["edges"]):
            self.edge(graph, edge, f"edges[{i}]")
        return graph

    def op(self, node: Any, where: str) -> ir.Op:
        if not isinstance(node, dict):
            raise self.fail(where, "not an object")
        kind = self.value(ir.OpKind, node.get("kind"), f"{where}.kind")
        assert isinstance(kind, ir.OpKind)
        record = {**node, "name": node.get("id"), "kind": node.get("kind")}
        values = self.fields(ir.Op, record, where, skip=("kind", "attrs"))
        attrs = self.record(ir.ATTRS_FOR[kind], node.get("attrs"), f"{where}.attrs")
        return ir.Op(kind=kind, attrs=attrs, **values)

    def edge(self, graph: ir.StrategyGraph, edge: Any, where: str) -> None:
        if not isinstance(edge, dict):
            raise self.fail(where, "not an object")
        kind = self.value(ir.EdgeKind, edge.get("kind"), f"{where}.kind")
        assert isinstance(kind, ir.EdgeKind)
        ends = []
        for key in ("source", "target"):
            end = edge.get(key)
            if not isinstance(end, str) or end not in graph.graph:
                raise self.fail(f"{where}.{key}", f"{end!r} is not an op of the graph")
            ends.append(end)
        if edge.get("speculative", kind is ir.EdgeKind.REWARD) != (kind is ir.EdgeKind.REWARD):
            raise self.fail(where, "only reward edges are speculative")
        graph.add_edge(ends[0], ends[1], kind)

    # -- values by their declared types ------------------------------------------------------

    def fields(
        self, cls: type, data: Mapping[str, Any], where: str, skip: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """The init fields of dataclass `cls` from `data` (absent ones keep their defaults)."""
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if not f.init or f.name in skip:
                continue
            at = f"{where}.{f.name}" if where else f.name
            if f.name not in data:
                has_default = (
                    f.default is not dataclasses.MISSING
                    or f.default_factory is not dataclasses.MISSING
                )
                if has_default:
                    continue
                raise self.fail(at, "missing")
            values[f.name] = self.value(hints[f.name], data[f.name], at)
        return values

    def record(self, cls: type, data: Any, where: str) -> Any:
        if not isinstance(data, dict):
            raise self.fail(where, f"expected an object ({cls.__name__})")
        try:
            return cls(**self.fields(cls, data, where))
        except (TypeError, ValueError) as e:
            raise self.fail(where, str(e)) from None

    def value(self, hint: Any, data: Any, where: str) -> Any:
        if hint is Any:
            return data
        origin = typing.get_origin(hint)
        if origin is typing.Union or origin is types.UnionType:
            return self.union(typing.get_args(hint), data, where)
        if origin is tuple:
            return self.tuple_of(typing.get_args(hint), data, where)
        if isinstance(hint, type):
            if issubclass(hint, Enum):
                try:
                    return hint(data)
                except ValueError:
                    known = ", ".join(repr(m.value) for m in hint)
                    raise self.fail(where, f"{data!r} is not one of {known}") from None
            if dataclasses.is_dataclass(hint):
                return self.record(hint, data, where)
            return self.primitive(hint, data, where)
        raise self.fail(where, f"cannot read a value of type {hint!r}")

    def union(self, members: tuple[Any, ...], data: Any, where: str) -> Any:
        if data is None:
            if _NONE in members:
                return None
            raise self.fail(where, "must not be null")
        options = [m for m in members if m is not _NONE]
        if any(m in _EXPR_CLASSES for m in options):
            return self.expression(data, where)
        failures = []
        for member in options:  # the first member type that reads the value wins
            try:
                return self.value(member, data, where)
            except GraphFormatError as e:
                failures.append(str(e).rpartition(": ")[2])
        raise self.fail(where, f"{data!r} fits none of its types ({'; '.join(failures)})")

    def tuple_of(self, items: tuple[Any, ...], data: Any, where: str) -> tuple[Any, ...]:
        if isinstance(data, dict):  # a tuple of (key, value) pairs is written as an object
            data = [list(pair) for pair in data.items()]
        if not isinstance(data, list):
            raise self.fail(where, "expected a list")
        if len(items) == 2 and items[1] is Ellipsis:
            return tuple(self.value(items[0], v, f"{where}[{i}]") for i, v in enumerate(data))
        if len(items) != len(data):
            raise self.fail(where, f"expected {len(items)} items, found {len(data)}")
        pairs = enumerate(zip(items, data, strict=True))
        return tuple(self.value(t, v, f"{where}[{i}]") for i, (t, v) in pairs)

    def primitive(self, hint: type, data: Any, where: str) -> Any:
        if hint is float and isinstance(data, int) and not isinstance(data, bool):
            return float(data)
        if hint is int and isinstance(data, bool):
            raise self.fail(where, f"expected an integer, found {data!r}")
        if isinstance(data, hint):
            return data
        raise self.fail(where, f"expected {hint.__name__}, found {data!r}")

    # -- expressions -------------------------------------------------------------------------

    def expression(self, data: Any, where: str) -> expr_module.Expr:
        if not isinstance(data, dict) or "tree" not in data:
            raise self.fail(where, "an expression must be {'text': ..., 'tree': ...}")
        expression = self.tree(data["tree"], f"{where}.tree")
        text = data.get("text")
        if text is not None and text != expr_text(expression):
            raise self.fail(where, f"the tree reads {expr_text(expression)!r}, the text {text!r}")
        return expression

    def tree(self, data: Any, where: str) -> expr_module.Expr:
        if not isinstance(data, dict):
            raise self.fail(where, "an expression tree must be an object")
        for form, (keys, build) in _EXPR_FORMS.items():
            if set(data) == keys:
                try:
                    return build(self, data, where)
                except (TypeError, ValueError, KeyError) as e:
                    raise self.fail(where, f"a malformed {form} ({e})") from None
        raise self.fail(where, f"not an expression tree: {json.dumps(data)[:80]}")

    def subtrees(self, items: Any, where: str) -> tuple[expr_module.Expr, ...]:
        if not isinstance(items, list):
            raise self.fail(where, "expected a list of expressions")
        return tuple(self.tree(item, f"{where}[{i}]") for i, item in enumerate(items))


def _const(reader: _Reader, d: dict[str, Any], where: str) -> expr_module.Expr:
    value = d["const"]
    if not isinstance(value, int | float | bool | str):
        raise reader.fail(where, f"a constant must be a number, a bool or a string: {value!r}")
    return expr_module.Const(value)


def _share(reader: _Reader, d: dict[str, Any], where: str) -> expr_module.Expr:
    # `share(leader)` arrived with IR version 2; an IR without it cannot hold one.
    share: Any = getattr(expr_module, "Share", None)
    if share is None or d["share"] != "leader":
        raise reader.fail(where, f"share({d['share']}) is not an expression of this IR")
    weight = d["weight"]
    if weight is not None and not isinstance(weight, str):
        raise reader.fail(where, f"a share's weight is a role name, not {weight!r}")
    result: expr_module.Expr = share(weight=weight)
    return result


Build = Callable[[_Reader, dict[str, Any], str], expr_module.Expr]

# The tree forms of compiler/export_json.py's `expr_tree`: the keys of each, and how to build it.
_EXPR_FORMS: dict[str, tuple[set[str], Build]] = {
    "constant": ({"const"}, _const),
    "name": ({"ref"}, lambda r, d, w: expr_module.Ref(str(d["ref"]))),
    "count": ({"count"}, lambda r, d, w: expr_module.Count(expr_module.Counted(d["count"]))),
    "unary operation": (
        {"op", "operand"},
        lambda r, d, w: expr_module.Unary(str(d["op"]), r.tree(d["operand"], f"{w}.operand")),
    ),
    "binary operation": (
        {"op", "left", "right"},
        lambda r, d, w: expr_module.Binary(
            str(d["op"]), r.tree(d["left"], f"{w}.left"), r.tree(d["right"], f"{w}.right")
        ),
    ),
    "call": (
        {"call", "args"},
        lambda r, d, w: expr_module.Call(str(d["call"]), r.subtrees(d["args"], f"{w}.args")),
    ),
    "share": ({"share", "weight"}, _share),
}

_EXPR_CLASSES = frozenset(typing.get_args(expr_module.Expr))

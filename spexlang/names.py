"""Which declared names a program refers to, by reading its text (for the unused warnings).

A parameter or model counts as used when some expression or clause names it, whether or not that
part of the program is otherwise correct; so a mistake elsewhere never causes a false "never
used" warning. Keyword names (`children = ...`) and count targets (`count(rollouts)`) are not
references.
"""

from __future__ import annotations

import dataclasses

from spexlang import ast


def _visit(node: object, out: set[str]) -> None:
    if isinstance(node, ast.Var):
        out.add(node.name)
    elif isinstance(node, ast.CallExpr):
        if node.function.text != "count":
            for arg in node.arguments:
                _visit(arg.value, out)
    elif isinstance(node, ast.Argument):
        _visit(node.value, out)
    elif isinstance(node, ast.ExpandClause | ast.BackupClause | ast.OrderClause):
        out.add(node.role.text)
        if isinstance(node, ast.ExpandClause):
            _visit(node.selection, out)
            _visit(node.arguments, out)
    elif isinstance(node, tuple):
        for item in node:
            _visit(item, out)
    elif dataclasses.is_dataclass(node) and not isinstance(node, ast.Name):
        for f in dataclasses.fields(node):
            if f.name != "span":
                _visit(getattr(node, f.name), out)


def referenced_names(program: ast.Program) -> set[str]:
    """Every name the program's declarations refer to (not the names they declare)."""
    out: set[str] = set()
    for decl in program.declarations:
        _visit(decl.arguments if isinstance(decl, ast.ModelDecl) else decl, out)
    return out

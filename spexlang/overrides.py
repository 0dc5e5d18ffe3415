"""`-p name=value` overrides: each value parsed as its parameter's declared type.

A wrong value is an error naming the parameter and its type, located at the parameter's
declaration; an unknown name is an error listing the parameters that exist.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from spexlang.checked import CheckedParam, Value, ValueType
from spexlang.diagnostics import Diagnostic, Severity, Source, UserError
from spexlang.scope import suggestion

_BOOLS = {"true": True, "false": False, "1": True, "0": False}


def split_override(raw: str) -> tuple[str, str]:
    """'width=32' -> ('width', '32'); a UserError when there is no '=' or no name."""
    name, sep, value = raw.partition("=")
    if not sep or not name.strip():
        raise UserError(f"-p expects NAME=VALUE, got {raw!r}")
    return name.strip(), value


def parse_value(text: str, type_: ValueType) -> Value | None:
    """`text` as a value of `type_`, or None when it is not one."""
    if type_ is ValueType.STR:
        return text
    stripped = text.strip()
    if type_ is ValueType.BOOL:
        return _BOOLS.get(stripped.lower())
    try:
        value = int(stripped) if type_ is ValueType.INT else float(stripped)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def resolve_values(
    strategy: str,
    params: tuple[CheckedParam, ...],
    overrides: Mapping[str, str],
    source: Source,
) -> tuple[dict[str, Value], list[Diagnostic]]:
    """Every parameter's value (override or default) and the errors the overrides caused."""
    values: dict[str, Value] = {p.name: p.default for p in params}
    by_name = {p.name: p for p in params}
    errors: list[Diagnostic] = []
    for name, text in overrides.items():
        param = by_name.get(name)
        if param is None:
            known = ", ".join(by_name) or "none"
            errors.append(
                Diagnostic(
                    Severity.ERROR,
                    f"-p {name}={text}: strategy `{strategy}` has no parameter `{name}` (its "
                    f"parameters: {known}){suggestion(name, by_name)}",
                    None,
                    source,
                )
            )
            continue
        value = parse_value(text, param.type)
        if value is None:
            errors.append(
                Diagnostic(
                    Severity.ERROR,
                    f"-p {name}={text}: parameter `{name}` is {param.type.value}, and {text!r} is "
                    f"not {_article(param.type)}",
                    param.decl.name.span,
                    source,
                )
            )
            continue
        values[name] = value
    return values, errors


def _article(type_: ValueType) -> str:
    return {
        ValueType.INT: "an int",
        ValueType.FLOAT: "a float",
        ValueType.BOOL: "a bool (true or false)",
        ValueType.STR: "a str",
    }[type_]

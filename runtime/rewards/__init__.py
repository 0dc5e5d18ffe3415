"""Rewards that score a path step by step (one score in [0, 1] per step).

`verifier` is model-free: it recomputes the arithmetic a step writes and checks the final answer
against the reference. `judge` asks a local model whether each step is correct. Engines that
serve `score()` themselves (the local engine) pick one with `--reward`.
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from runtime.engines.protocol import RewardRequest


class RewardKind(Enum):
    """Which reward an engine serves."""

    VERIFIER = "verifier"  # arithmetic and outcome checks, no model
    JUDGE = "judge"  # a local model's P("Yes") that the step is correct


class PathReward(Protocol):
    """Scores every step of a path; runs synchronously (engines decide on which thread)."""

    name: str

    def score(self, request: RewardRequest) -> tuple[float, ...]: ...

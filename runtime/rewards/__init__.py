"""Rewards that score a path step by step (one score in [0, 1] per step).

`verifier` is model-free: it recomputes the arithmetic a step writes. `oracle` is the same
verifier that also checks the final answer against the question's reference answer: it reads
the answer key, so a search guided by it is not a method that could run without one, and its
accuracy is not the method's. `judge` asks a local model whether each step is correct. Engines that
serve `score()` themselves (the local engine) pick one with `--reward`.
"""

from __future__ import annotations

from enum import Enum
from typing import Protocol

from runtime.engines.protocol import RewardRequest


class RewardKind(Enum):
    """Which reward an engine serves."""

    VERIFIER = "verifier"  # arithmetic checks, no model, no reference answer
    ORACLE = "oracle"  # the verifier plus the final answer checked against the reference
    JUDGE = "judge"  # a local model's P("Yes") that the step is correct


class PathReward(Protocol):
    """Scores every step of a path; runs synchronously (engines decide on which thread)."""

    name: str

    def score(self, request: RewardRequest) -> tuple[float, ...]: ...

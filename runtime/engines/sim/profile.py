"""Named cost profiles of the simulated engine: how long a batched forward pass takes.

A profile describes two servers, the policy (generation) server and the reward server, each with
the same cost model: a decode iteration over a running batch of B sequences holding C context
tokens costs `decode_s(B) + decode_attn_s_per_context_token * C` (linear layers, then attention
reading every cached K/V byte); a prefill pass over P new tokens that follow L cached tokens costs
`prefill_s(P) + prefill_attn_s_per_token_pair * P * (L + P / 2)` (attention FLOPs). `decode_s` and
`prefill_s` are piecewise-linear curves fitted to measurements. Profiles are JSON files in
`profiles/`, written by `benchmarks/sim_fit_profiles.py`, each carrying its sources.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass
from importlib import resources
from typing import Any

from spexlang.diagnostics import UserError

PROFILE_PACKAGE = "runtime.engines.sim"
PROFILE_FOLDER = "profiles"


@dataclass(frozen=True)
class PiecewiseLinear:
    """A curve through (x, y) knots; flat before the first knot, extended by the last slope."""

    xs: tuple[float, ...]
    ys: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.xs) != len(self.ys) or not self.xs:
            raise ValueError("a piecewise-linear curve needs as many x as y knots, at least one")
        if any(b <= a for a, b in zip(self.xs, self.xs[1:], strict=False)):
            raise ValueError("piecewise-linear knots must increase strictly")

    def __call__(self, x: float) -> float:
        xs, ys = self.xs, self.ys
        if x <= xs[0] or len(xs) == 1:
            return ys[0]
        i = bisect_right(xs, x)
        if i >= len(xs):
            i = len(xs) - 1
        x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
        return y0 + (y1 - y0) * (x - x0) / (x1 - x0)

    @staticmethod
    def from_json(data: Any) -> PiecewiseLinear:
        return PiecewiseLinear(
            tuple(float(x) for x in data["tokens"]), tuple(float(y) for y in data["seconds"])
        )


@dataclass(frozen=True)
class ServerCost:
    """The cost model and limits of one batched inference server."""

    decode_s: PiecewiseLinear  # batch size -> seconds per decode iteration, without attention
    prefill_s: PiecewiseLinear  # new tokens in one pass -> seconds, without attention
    decode_attn_s_per_context_token: float
    prefill_attn_s_per_token_pair: float
    max_running_requests: int
    kv_capacity_tokens: int
    max_prefill_tokens: int  # a longer prefill is split into chunks of at most this many tokens

    def decode_iterations_s(self, batch: int, context: int, k: int) -> float:
        """Seconds for k decode iterations of a constant batch whose context starts at `context`.

        The context grows by `batch` tokens per iteration, so the attention term is an
        arithmetic series summed in closed form.
        """
        c = self.decode_attn_s_per_context_token
        return k * (self.decode_s(batch) + c * context) + c * batch * k * (k - 1) / 2

    def decode_iterations_within(self, batch: int, context: int, seconds: float) -> int:
        """The largest k with decode_iterations_s(batch, context, k) <= seconds."""
        if seconds <= 0:
            return 0
        a = self.decode_s(batch) + self.decode_attn_s_per_context_token * context
        half = self.decode_attn_s_per_context_token * batch / 2
        if half <= 0:
            k = int(seconds / a) if a > 0 else 0
        else:
            b = a - half
            k = int((-b + (b * b + 4 * half * seconds) ** 0.5) / (2 * half))
        # The float solution can be off by one either way; settle it exactly.
        while self.decode_iterations_s(batch, context, k + 1) <= seconds:
            k += 1
        while k > 0 and self.decode_iterations_s(batch, context, k) > seconds:
            k -= 1
        return k

    def prefill_pass_s(self, new_tokens: int, cached_tokens: int) -> float:
        """Seconds to prefill `new_tokens` following `cached_tokens` already in the KV cache."""
        return self.prefill_batch_s(new_tokens, new_tokens * (cached_tokens + new_tokens / 2))

    def prefill_batch_s(self, new_tokens: int, token_pairs: float) -> float:
        """Seconds for one prefill pass over several prompts: `new_tokens` in all, and
        `token_pairs` = sum over prompts of new * (cached + new / 2) attention pairs."""
        if new_tokens <= 0:
            return 0.0
        chunks = -(-new_tokens // self.max_prefill_tokens)
        linear = chunks * self.prefill_s(new_tokens / chunks)
        return linear + self.prefill_attn_s_per_token_pair * token_pairs

    @staticmethod
    def from_json(data: Any) -> ServerCost:
        return ServerCost(
            decode_s=PiecewiseLinear.from_json(data["decode_s"]),
            prefill_s=PiecewiseLinear.from_json(data["prefill_s"]),
            decode_attn_s_per_context_token=float(data["decode_attn_s_per_context_token"]),
            prefill_attn_s_per_token_pair=float(data["prefill_attn_s_per_token_pair"]),
            max_running_requests=int(data["max_running_requests"]),
            kv_capacity_tokens=int(data["kv_capacity_tokens"]),
            max_prefill_tokens=int(data["max_prefill_tokens"]),
        )


@dataclass(frozen=True)
class CostProfile:
    """A named pair of server cost models with the sources of their numbers."""

    name: str
    description: str
    policy: ServerCost
    reward: ServerCost
    sources: tuple[str, ...]
    generated_by: str

    @staticmethod
    def from_json(data: Any) -> CostProfile:
        return CostProfile(
            name=str(data["name"]),
            description=str(data["description"]),
            policy=ServerCost.from_json(data["policy"]),
            reward=ServerCost.from_json(data["reward"]),
            sources=tuple(str(s) for s in data["sources"]),
            generated_by=str(data["generated_by"]),
        )


def list_profiles() -> list[str]:
    """The names of the shipped cost profiles."""
    root = resources.files(PROFILE_PACKAGE).joinpath(PROFILE_FOLDER)
    return sorted(p.name.removesuffix(".json") for p in root.iterdir() if p.name.endswith(".json"))


def load_profile(name: str) -> CostProfile:
    """Load a shipped profile by name; an unknown name is a UserError listing the known ones."""
    known = list_profiles()
    if name not in known:
        raise UserError(f"unknown sim engine profile {name!r}; known profiles: {', '.join(known)}")
    text = (
        resources.files(PROFILE_PACKAGE).joinpath(PROFILE_FOLDER, f"{name}.json").read_text("utf-8")
    )
    return CostProfile.from_json(json.loads(text))

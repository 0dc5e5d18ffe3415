"""Running totals of the sim engine, for tests, benchmarks and `spex serve`'s metrics."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class SimStats:
    """A snapshot of the counters; policy (generate) and reward (score) requests apart."""

    generate_started: int = 0  # entered the running batch (a resumed preemption not again)
    generate_finished: int = 0
    generate_aborted: int = 0
    generate_preempted: int = 0  # paused to make room for main-path work
    tokens_generated: int = 0  # decoded tokens, aborted requests' partial progress included
    prompt_tokens: int = 0
    cached_prompt_tokens: int = 0
    prefill_tokens: int = 0  # prompt tokens computed, recomputation after preemption included
    score_started: int = 0
    score_finished: int = 0
    score_aborted: int = 0
    reward_tokens: int = 0
    reward_cached_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class SimCounters:
    """Mutable totals owned by one engine (never shared between engines)."""

    __slots__ = (
        "cached_prompt_tokens",
        "generate_aborted",
        "generate_finished",
        "generate_preempted",
        "generate_started",
        "prefill_tokens",
        "prompt_tokens",
        "reward_cached_tokens",
        "reward_tokens",
        "score_aborted",
        "score_finished",
        "score_started",
        "tokens_generated",
    )

    def __init__(self) -> None:
        self.generate_started = 0
        self.generate_finished = 0
        self.generate_aborted = 0
        self.generate_preempted = 0
        self.tokens_generated = 0
        self.prompt_tokens = 0
        self.cached_prompt_tokens = 0
        self.prefill_tokens = 0
        self.score_started = 0
        self.score_finished = 0
        self.score_aborted = 0
        self.reward_tokens = 0
        self.reward_cached_tokens = 0

    def snapshot(self) -> SimStats:
        return SimStats(**{name: getattr(self, name) for name in self.__slots__})

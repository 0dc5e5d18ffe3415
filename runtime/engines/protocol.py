"""The engine protocol: what every engine (sim, local, sglang) offers the executor.

Requests carry plain text, as SGLang's native API does: the executor renders a node's full path
(prompt, then each step followed by the step delimiter) and asks for one more step. Engines that
reuse a parent's KV cache find it by longest prefix. A node's text must depend on its request's
seed and prompt only, never on which other requests shared a batch: that is what makes
speculation exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Protocol, runtime_checkable


class Priority(IntEnum):
    """Scheduling class. Main-path work always goes before speculative work."""

    MAIN = 0
    SPECULATIVE = 1


@dataclass(frozen=True)
class SamplingParams:
    """Per-request sampling. `stop` strings are not included in the returned text."""

    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class GenerateRequest:
    request_id: str
    text: str  # the full prefix: prompt plus the path's steps so far
    sampling: SamplingParams
    priority: Priority = Priority.MAIN
    role: str | None = None  # the program's role that asks (engines bound per role route by it)


class FinishReason(IntEnum):
    STOP = 0  # hit a stop string: the step ended, the path may go on
    LENGTH = 1  # hit max_new_tokens
    ABORT = 2  # aborted before finishing
    EOS = 3  # the model ended its sequence: the path cannot go on (a finished leaf)


@dataclass(frozen=True)
class GenerateResult:
    request_id: str
    text: str  # the new step only, without the matched stop string
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int  # prompt tokens served from the prefix cache
    finish_reason: FinishReason
    started_at: float  # engine clock, when the request entered the running batch
    finished_at: float


@dataclass(frozen=True)
class RewardRequest:
    """Score a path step by step (a process reward model) or as a whole (an outcome model)."""

    request_id: str
    prompt: str  # the rendered prompt (the root's text)
    steps: tuple[str, ...]  # the path's steps, the newest last
    step_delimiter: str
    priority: Priority = Priority.MAIN
    reference: str | None = None  # the dataset's answer, for outcome verifiers that use it
    role: str | None = None  # the reward role that asks (engines bound per role route by it)


@dataclass(frozen=True)
class RewardResult:
    request_id: str
    step_scores: tuple[float, ...]  # one per step, each in [0, 1]
    started_at: float
    finished_at: float


@dataclass(frozen=True)
class Capacity:
    """What the engine can run at once, and how busy it is now."""

    max_running_requests: int
    max_total_tokens: int  # KV capacity in tokens
    running_requests: int
    queued_requests: int
    used_tokens: int

    @property
    def free_slots(self) -> int:
        return max(0, self.max_running_requests - self.running_requests - self.queued_requests)


class EngineError(Exception):
    """An engine failed a request (server error, timeout, connection lost). Says what to do."""


class RequestAborted(EngineError):
    """The request was aborted before it finished."""


@runtime_checkable
class Engine(Protocol):
    """An asynchronous generate-and-score service."""

    name: str

    async def start(self) -> None:
        """Load models or check the servers; raise EngineError with a clear message if not ready."""

    async def close(self) -> None:
        """Release resources; abort what still runs."""

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        """Generate one step. Raises RequestAborted if aborted, EngineError on failure."""

    async def score(self, request: RewardRequest) -> RewardResult:
        """Score a path. Raises RequestAborted if aborted, EngineError on failure."""

    async def abort(self, request_id: str) -> None:
        """Abort a queued or running request at once; unknown or finished ids are ignored."""

    def capacity(self) -> Capacity:
        """The engine's capacity and current load (the last known, for remote engines)."""

    def now(self) -> float:
        """The engine's clock in seconds (virtual for sim, wall for real engines)."""


class Service(Enum):
    """What an engine can be asked for: steps (generate roles) or scores (reward roles)."""

    GENERATE = "generate"
    REWARD = "reward"


def services_of(engine: object) -> frozenset[Service]:
    """The services an engine offers: its `services` attribute where it has one (an SGLang
    client without a reward server serves no reward), else both (sim, local)."""
    declared = getattr(engine, "services", None)
    if isinstance(declared, frozenset):
        return frozenset(s for s in declared if isinstance(s, Service))
    return frozenset(Service)

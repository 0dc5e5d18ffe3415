"""`SimEngine`: the simulated engine behind the Engine protocol.

It couples the synthetic reasoning task (what each step says and scores), a policy server
(continuous batching, prefix cache, priorities, preemption) and a reward server, all driven by
asyncio timers on the running loop's clock. On `runtime.clock.run_virtual` a whole benchmark
costs no simulated wall time; on an ordinary loop it runs in real time divided by `time_scale`.
"""

from __future__ import annotations

from collections.abc import Mapping

from runtime.engines.protocol import (
    Capacity,
    EngineError,
    GenerateRequest,
    GenerateResult,
    RewardRequest,
    RewardResult,
)
from runtime.engines.sim.counters import SimCounters, SimStats
from runtime.engines.sim.policy import PolicyServer
from runtime.engines.sim.profile import CostProfile, load_profile
from runtime.engines.sim.reward import RewardServer
from runtime.engines.sim.task import SyntheticTask, TaskParams
from spexlang.diagnostics import UserError


class SimEngine:
    """A deterministic simulated LLM + PRM service with a cost model from a named profile."""

    def __init__(
        self,
        profile: str | CostProfile = "h100-7b",
        *,
        seed: int = 0,
        answers: Mapping[str, str] | None = None,
        max_running_requests: int | None = None,
        time_scale: float = 1.0,
        task_params: TaskParams | None = None,
    ) -> None:
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        if time_scale <= 0:
            raise UserError(f"sim engine time_scale must be positive, not {time_scale}")
        max_running = max_running_requests or self.profile.policy.max_running_requests
        if max_running < 1:
            raise UserError(f"max_running_requests must be at least 1, not {max_running}")
        self.name = f"sim:{self.profile.name}"
        self.seed = seed
        self.time_scale = time_scale
        self.counters = SimCounters()
        self.task = SyntheticTask(answers, seed, task_params)
        self.policy = PolicyServer(
            self.profile.policy, self.counters, max_running=max_running, time_scale=time_scale
        )
        self.reward = RewardServer(
            self.profile.reward, self.task, self.counters, time_scale=time_scale
        )
        self._closed = False

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        self.policy.abort_all()
        self.reward.abort_all()

    async def generate(self, request: GenerateRequest) -> GenerateResult:
        if self._closed:
            raise EngineError("the sim engine is closed; start it again before generating")
        sampling = request.sampling
        if sampling.max_new_tokens < 1:
            raise EngineError(
                f"request {request.request_id}: max_new_tokens must be at least 1, "
                f"not {sampling.max_new_tokens}"
            )
        delimiter = sampling.stop[0] if sampling.stop else ""
        step = self.task.step(request.text, delimiter, sampling.seed, sampling.max_new_tokens)
        return await self.policy.submit(request, step)

    async def score(self, request: RewardRequest) -> RewardResult:
        if self._closed:
            raise EngineError("the sim engine is closed; start it again before scoring")
        return await self.reward.submit(request)

    async def abort(self, request_id: str) -> None:
        self.policy.abort(request_id)
        self.reward.abort(request_id)

    def capacity(self) -> Capacity:
        policy = self.policy
        return Capacity(
            max_running_requests=policy.max_running,
            max_total_tokens=policy.kv.capacity,
            running_requests=policy.running,
            queued_requests=policy.queued,
            used_tokens=policy.kv.used_tokens,
        )

    def now(self) -> float:
        return self.policy.now()

    def kv_peak_tokens(self) -> int:
        """The most KV-cache tokens the policy server's running requests ever held at once
        (their prompts' prefixes, shared ones once, plus their reserved completions)."""
        return self.policy.kv.peak_used_tokens

    def stats(self) -> SimStats:
        """The counters so far: requests started, finished, aborted, preempted; tokens."""
        return self.counters.snapshot()

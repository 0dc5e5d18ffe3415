"""What spex reads from an SGLang server's `/get_server_info` and `/get_model_info`.

`/get_server_info` is the server's resolved launch arguments merged with scheduler facts
(`max_total_num_tokens`) and `internal_states`, one per data-parallel rank (since 0.5.23 each
carries `effective_max_running_requests_per_dp`). spex takes the request capacity from those
per-rank values when present, else from the `max_running_requests` launch argument, and the
priority settings that decide which `priority` integers mean "main path first".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime.engines.protocol import EngineError
from runtime.engines.sglang.wire import PriorityValues


@dataclass(frozen=True)
class ServerInfo:
    """The facts spex uses about one server."""

    url: str
    max_running_requests: int
    max_total_tokens: int
    priority_scheduling: bool
    low_priority_values_first: bool
    preemption_threshold: int
    version: str
    model_path: str | None

    @property
    def priorities(self) -> PriorityValues | None:
        """The `priority` values to send; None when the server does not schedule by priority."""
        if not self.priority_scheduling:
            return None
        return PriorityValues.for_server(self.low_priority_values_first, self.preemption_threshold)


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return int(value) if value >= 1 else None


def _flag(info: Mapping[str, Any], key: str) -> bool:
    if key in info:
        return bool(info[key])
    for state in info.get("internal_states") or ():
        if isinstance(state, dict) and key in state:
            return bool(state[key])
    return False


def _threshold(value: Any) -> int:
    """SGLang's preemption threshold (default 10); an unusable value counts as the default."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return 10
    return max(0, min(int(value), 1_000_000))


def parse_server_info(url: str, info: Any, model_info: Any, launch_command: str) -> ServerInfo:
    """Read a server's capacity and priority settings; say how to fix a server that hides them."""
    if not isinstance(info, dict):
        raise EngineError(f"the server at {url} answered /get_server_info with {str(info)[:200]}")
    states = [s for s in info.get("internal_states") or () if isinstance(s, dict)]
    per_rank = [_positive_int(s.get("effective_max_running_requests_per_dp")) for s in states]
    running: int | None
    if per_rank and all(v is not None for v in per_rank):
        running = sum(v for v in per_rank if v is not None)
    else:
        running = _positive_int(info.get("max_running_requests"))
    tokens = _positive_int(info.get("max_total_num_tokens"))
    if running is None or tokens is None:
        missing = "max_running_requests" if running is None else "max_total_num_tokens"
        raise EngineError(
            f"the server at {url} does not report {missing} in /get_server_info, so spex cannot "
            f"size its speculation budget. Restart it with an explicit limit, e.g.: "
            f"{launch_command} --max-running-requests 256"
        )
    threshold = info.get("priority_scheduling_preemption_threshold", 10)
    model_path = model_info.get("model_path") if isinstance(model_info, dict) else None
    return ServerInfo(
        url=url,
        max_running_requests=running,
        max_total_tokens=tokens,
        priority_scheduling=_flag(info, "enable_priority_scheduling"),
        low_priority_values_first=_flag(info, "schedule_low_priority_values_first"),
        preemption_threshold=_threshold(threshold),
        version=str(info.get("version", "unknown")),
        model_path=str(model_path) if model_path else None,
    )

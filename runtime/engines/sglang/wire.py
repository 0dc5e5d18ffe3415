"""The JSON bodies spex sends to SGLang's native `/generate` and `/abort_request`, and the parsing
of what comes back.

Field names are SGLang's own (checked against the 0.5.23 wheel: `GenerateReqInput` in
`sglang/srt/managers/io_struct.py`, `SamplingParams` in `sglang/srt/sampling/sampling_params.py`
and the schema `sglang/api/v1/api_types.py`, which answers HTTP 400 to an unknown
`sampling_params` key). Only fields every SGLang since 0.5.3 accepts are sent: `sampling_seed`
and `priority` appeared in 0.5.3.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime.engines.protocol import (
    EngineError,
    FinishReason,
    GenerateRequest,
    GenerateResult,
    Priority,
    RequestAborted,
)


@dataclass(frozen=True)
class PriorityValues:
    """The integers sent as SGLang's `priority` for each spex priority class.

    SGLang (`--enable-priority-scheduling`) runs higher values first unless the server was started
    with `--schedule-low-priority-values-first`, and lets a waiting request preempt a running one
    only when their values differ by more than `--priority-scheduling-preemption-threshold`
    (default 10). The values are chosen from the server's own settings so that main-path work
    both goes first and may preempt speculative work. `None` means "send no priority": the
    server does not schedule by priority (and may even abort requests that carry one).
    """

    main: int
    speculative: int

    @staticmethod
    def for_server(low_values_first: bool, preemption_threshold: int) -> PriorityValues:
        gap = max(0, preemption_threshold) + 1
        if low_values_first:
            return PriorityValues(main=0, speculative=gap)
        return PriorityValues(main=gap, speculative=0)

    def value(self, priority: Priority) -> int:
        return self.main if priority is Priority.MAIN else self.speculative


def generate_body(request: GenerateRequest, priorities: PriorityValues | None) -> dict[str, Any]:
    """The `/generate` body for one step: plain text in, text out, no streaming."""
    s = request.sampling
    sampling: dict[str, Any] = {
        "max_new_tokens": s.max_new_tokens,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "top_k": s.top_k,
        "sampling_seed": s.seed,
    }
    if s.stop:
        sampling["stop"] = list(s.stop)
    body: dict[str, Any] = {
        "text": request.text,
        "sampling_params": sampling,
        "rid": wire_rid(request.request_id, request.role),
    }
    if priorities is not None:
        body["priority"] = priorities.value(request.priority)
    return body


ROLE_MARK = "@"  # a rid sent as `<request id>@<role>`: spex serve counts requests by role


def wire_rid(request_id: str, role: str | None) -> str:
    """The rid sent for a request: its id, tagged with the role that asks when it has one.

    SGLang treats a rid as an opaque string; tagging it lets a server (spex serve's
    `/spex/counters`, or a log reader) tell the roles apart without any non-SGLang field.
    """
    return f"{request_id}{ROLE_MARK}{role}" if role else request_id


def role_of_rid(rid: str) -> str | None:
    """The role a `wire_rid` names (the part after the last mark, before any `#i` text index
    of a /classify batch), or None for an untagged rid."""
    head, mark, tail = rid.rpartition(ROLE_MARK)
    if not mark or not head:
        return None
    role = tail.partition("#")[0]
    return role if role.isidentifier() else None


def abort_body(rid: str) -> dict[str, Any]:
    """The `/abort_request` body; SGLang matches the rid exactly at the HTTP layer."""
    return {"rid": rid}


def finish_reason_of(meta_info: Mapping[str, Any]) -> tuple[FinishReason, str]:
    """SGLang's `finish_reason` object ({"type": "stop" | "length" | "abort", ...}).

    SGLang answers `{"type": "stop", "matched": ...}` both when a stop string matched
    (`FINISH_MATCHED_STR`: `matched` is the string) and when the model emitted an end-of-sequence
    token (`FINISH_MATCHED_TOKEN`: `matched` is the token id, or a list of ids). spex sends no
    `stop_token_ids`, so a matched token is always the model's own end of sequence: EOS. A
    missing or null `matched` is read as a stop string, the reading that lets the path go on.
    """
    reason = meta_info.get("finish_reason")
    if isinstance(reason, dict):
        kind = str(reason.get("type", ""))
        message = str(reason.get("message") or "")
        matched = reason.get("matched")
    else:
        kind, message, matched = str(reason or ""), "", None
    if kind == "stop":
        return (FinishReason.EOS if _is_token_match(matched) else FinishReason.STOP), message
    if kind == "length":
        return FinishReason.LENGTH, message
    if kind == "abort":
        return FinishReason.ABORT, message
    raise EngineError(f"unexpected finish_reason {reason!r} in an SGLang answer")


def _is_token_match(matched: Any) -> bool:
    """A token id or a list of token ids (not a bool, which JSON would not send for an id)."""
    if isinstance(matched, list):
        return bool(matched) and all(_is_token_id(m) for m in matched)
    return _is_token_id(matched)


def _is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_field(meta_info: Mapping[str, Any], key: str, where: str) -> int:
    value = meta_info.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EngineError(f"{where}: meta_info.{key} is {value!r}, not a number")
    return int(value)


def parse_generate(
    request: GenerateRequest,
    answer: Any,
    sent_at: float,
    received_at: float,
    where: str,
) -> GenerateResult:
    """Turn SGLang's `/generate` answer into a `GenerateResult` on the client's clock.

    `started_at` is when the request entered the running batch: the send time plus the
    `queue_time` SGLang reports when it does (clamped into the call's own interval).
    Raises `RequestAborted` for an aborted request.
    """
    if isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]
    if not isinstance(answer, dict) or not isinstance(answer.get("meta_info"), dict):
        raise EngineError(f"{where} answered /generate without meta_info: {str(answer)[:200]}")
    meta: dict[str, Any] = answer["meta_info"]
    reason, message = finish_reason_of(meta)
    if reason is FinishReason.ABORT:
        raise RequestAborted(
            f"generate request {request.request_id} was aborted by {where}"
            + (f": {message}" if message else "")
        )
    text = answer.get("text")
    if not isinstance(text, str):
        raise EngineError(f"{where} answered /generate with text {text!r}")
    queue = meta.get("queue_time")
    started = sent_at + float(queue) if isinstance(queue, int | float) else sent_at
    started = min(max(started, sent_at), received_at)
    return GenerateResult(
        request_id=request.request_id,
        text=text,
        prompt_tokens=_int_field(meta, "prompt_tokens", where),
        completion_tokens=_int_field(meta, "completion_tokens", where),
        cached_tokens=_int_field(meta, "cached_tokens", where),
        finish_reason=reason,
        started_at=started,
        finished_at=received_at,
    )

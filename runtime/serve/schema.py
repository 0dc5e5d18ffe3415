"""The request bodies `spex serve` accepts: a strict subset of SGLang's native API.

Field names and meanings are SGLang's (0.5.23: `GenerateReqInput`, `EmbeddingReqInput`,
`AbortReq` in `sglang/srt/managers/io_struct.py`, `SamplingParams` in
`sglang/srt/sampling/sampling_params.py`, `ScoringRequest` in
`sglang/srt/entrypoints/openai/protocol.py`). Every body is checked key by key: an unknown key
is an HTTP 400 with SGLang's own wording ("unknown field `x`, expected one of ..."), and a key
SGLang knows but spex serve does not implement is a 400 saying so. SGLang itself rejects unknown
`sampling_params` keys the same way but ignores unknown top-level keys; spex serve rejects both,
so that a client tested against it sends nothing a real server would silently drop.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime.engines.protocol import GenerateRequest, Priority, RewardRequest, SamplingParams
from runtime.engines.sglang.wire import role_of_rid

# What spex serve implements, per body. Each is a subset of what SGLang 0.5.x accepts.
GENERATE_FIELDS = ("text", "sampling_params", "rid", "priority", "stream")
SAMPLING_FIELDS = ("max_new_tokens", "temperature", "top_p", "top_k", "stop", "sampling_seed")
CLASSIFY_FIELDS = ("text", "rid", "priority")
ABORT_FIELDS = ("rid", "abort_all")
SCORE_FIELDS = (
    "query",
    "items",
    "label_token_ids",
    "apply_softmax",
    "score_extraction_token",
    "model",
)

# Keys SGLang accepts that spex serve does not implement (a 400 names them as such).
SGLANG_ONLY_GENERATE = (
    "input_ids", "input_embeds", "image_data", "video_data", "audio_data", "return_logprob",
    "logprob_start_len", "top_logprobs_num", "token_ids_logprob", "return_text_in_logprobs",
    "return_hidden_states", "modalities", "session_params", "lora_path", "custom_logit_processor",
    "bootstrap_host", "bootstrap_port", "bootstrap_room", "bootstrap_pair_key", "routed_dp_rank",
    "data_parallel_rank", "extra_key", "cache_salt", "routing_key", "custom_labels", "log_metrics",
    "return_prompt_token_ids", "require_reasoning", "max_thinking_tokens", "session_id",
)  # fmt: skip
SGLANG_ONLY_SAMPLING = (
    "stop_token_ids", "stop_regex", "min_p", "frequency_penalty", "presence_penalty",
    "repetition_penalty", "min_new_tokens", "n", "json_schema", "regex", "ebnf",
    "structural_tag", "ignore_eos", "skip_special_tokens", "spaces_between_special_tokens",
    "no_stop_trim", "stream_interval", "logit_bias", "custom_params", "beam_width", "watermark",
    "choice",
)  # fmt: skip
SGLANG_ONLY_CLASSIFY = (
    "input_ids", "input_embeds", "image_data", "video_data", "audio_data", "sampling_params",
    "log_metrics", "modalities", "is_cross_encoder_request", "lora_path", "dimensions",
    "return_pooled_hidden_states", "routing_key", "return_prompt_token_ids",
)  # fmt: skip
SGLANG_ONLY_SCORE = (
    "temperature", "return_token_logprobs", "item_first", "return_pooled_hidden_states",
    "embed_override_token_id", "query_embed_overrides", "item_embed_overrides",
)  # fmt: skip


class BadRequest(Exception):
    """A body spex serve refuses; the message is the HTTP 400's `error` text."""


def check_keys(body: Any, accepted: tuple[str, ...], known: tuple[str, ...], what: str) -> None:
    """Refuse a non-object body, and any key outside `accepted`, in SGLang's words."""
    if not isinstance(body, dict):
        raise BadRequest(f"invalid type: expected struct {what}")
    for key in body:
        if key in accepted:
            continue
        if key in known:
            raise BadRequest(f"field `{key}` of {what} is not supported by spex serve")
        listed = ", ".join(f"`{f}`" for f in accepted)
        raise BadRequest(f"unknown field `{key}`, expected one of {listed}")


def _int(body: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"invalid type: `{key}` must be an integer, got {value!r}")
    return value


def _float(body: Mapping[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRequest(f"invalid type: `{key}` must be a finite number, got {value!r}")
    return float(value)


def _str(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str):
        raise BadRequest(f"invalid type: `{key}` must be a string, got {value!r}")
    return value


def priority_class(body: Mapping[str, Any]) -> Priority:
    """SGLang's integer priority, read the way spex serve announces it (higher runs first):
    a value above 0 (or none) is main-path work, 0 or below is speculative."""
    if body.get("priority") is None:
        return Priority.MAIN
    return Priority.MAIN if _int(body, "priority") > 0 else Priority.SPECULATIVE


def sampling_of(raw: Any) -> SamplingParams:
    check_keys(raw, SAMPLING_FIELDS, SGLANG_ONLY_SAMPLING, "SamplingParams")
    stop = raw.get("stop")
    if stop is None:
        stops: tuple[str, ...] = ()
    elif isinstance(stop, str):
        stops = (stop,)
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = tuple(stop)
    else:
        raise BadRequest(f"invalid type: `stop` must be a string or a list of strings: {stop!r}")
    max_new = _int(raw, "max_new_tokens", 128)
    temperature = _float(raw, "temperature", 1.0)
    top_p = _float(raw, "top_p", 1.0)
    top_k = _int(raw, "top_k", -1)
    if max_new < 0:
        raise BadRequest(f"max_new_tokens must be at least 0, got {max_new}")
    if temperature < 0:
        raise BadRequest(f"temperature must be non-negative, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise BadRequest(f"top_p must be in (0, 1], got {top_p}")
    if top_k != -1 and top_k < 1:
        raise BadRequest(f"top_k must be -1 (disable) or at least 1, got {top_k}")
    seed = _int(raw, "sampling_seed", 42) if raw.get("sampling_seed") is not None else 42
    return SamplingParams(
        max_new_tokens=max_new,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        stop=stops,
        seed=seed,
    )


def parse_generate(body: Any) -> GenerateRequest:
    """A `/generate` body: one text (no batches, no streaming) and its sampling parameters."""
    check_keys(body, GENERATE_FIELDS, SGLANG_ONLY_GENERATE, "GenerateRequest")
    if body.get("stream"):
        raise BadRequest("streaming (`stream: true`) is not supported by spex serve")
    text = body.get("text")
    if isinstance(text, list):
        raise BadRequest("batched `text` is not supported by spex serve: send one text per call")
    if not isinstance(text, str):
        raise BadRequest("Either text or input_ids should be provided.")
    rid = body.get("rid")
    if rid is not None and not isinstance(rid, str):
        raise BadRequest(f"invalid type: `rid` must be a string, got {rid!r}")
    return GenerateRequest(
        request_id=rid or uuid.uuid4().hex,
        text=text,
        sampling=sampling_of(body.get("sampling_params") or {}),
        priority=priority_class(body),
        role=role_of_rid(rid) if rid else None,
    )


@dataclass(frozen=True)
class ClassifyCall:
    """A `/classify` path: the reward request, the rid of each text, and each text's number of
    steps (0 for the prompt)."""

    request: RewardRequest
    rids: tuple[str, ...]
    rows: tuple[int, ...]


def parse_classify(body: Any, delimiter: str) -> ClassifyCall:
    """`text` = [prompt, then prefixes of one path, shortest first]: each prefix is the prompt
    followed by steps, each step followed by the step delimiter `delimiter` (the one spex serve
    was started with). The longest text gives the path; the others must be its prefixes.
    """
    check_keys(body, CLASSIFY_FIELDS, SGLANG_ONLY_CLASSIFY, "EmbeddingReqInput")
    texts = body.get("text")
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadRequest(
            "spex serve scores paths: send `text` as [prompt, prompt+step1+delimiter, "
            "prompt+step1+delimiter+step2+delimiter, ...] (any of the prefixes, shortest first)"
        )
    raw_rids = body.get("rid")
    if raw_rids is None:
        base = uuid.uuid4().hex
        rids = tuple(f"{base}#{i}" for i in range(len(texts)))
    elif isinstance(raw_rids, list) and all(isinstance(r, str) for r in raw_rids):
        if len(raw_rids) != len(texts):
            raise BadRequest(f"{len(raw_rids)} rids for {len(texts)} texts")
        rids = tuple(raw_rids)
    else:
        raise BadRequest("`rid` must be a list of strings, one per text")
    prompt = texts[0]
    steps = _steps_of(prompt, texts[-1], delimiter, len(texts) - 1)
    rows = [0]
    for i, text in enumerate(texts[1:], start=1):
        count = len(_steps_of(prompt, text, delimiter, i))
        if count <= rows[-1] or text != prompt + "".join(s + delimiter for s in steps[:count]):
            raise BadRequest(f"text {i} is not a longer prefix of the path in the last text")
        rows.append(count)
    request = RewardRequest(
        request_id=rids[0],
        prompt=prompt,
        steps=tuple(steps),
        step_delimiter=delimiter,
        priority=priority_class(body),
        role=role_of_rid(rids[0]) if raw_rids is not None else None,
    )
    return ClassifyCall(request, rids, tuple(rows))


def _steps_of(prompt: str, text: str, delimiter: str, index: int) -> list[str]:
    """The steps of `text` after `prompt`, each ended by the step delimiter."""
    if text == prompt:
        return []
    rest = text[len(prompt) :]
    if not text.startswith(prompt) or not rest.endswith(delimiter):
        raise BadRequest(
            f"text {index} is not the prompt (text 0) followed by steps, each ended by the step "
            f"delimiter {delimiter!r} (spex serve --step-delimiter)"
        )
    return rest[: len(rest) - len(delimiter)].split(delimiter)


@dataclass(frozen=True)
class ScoreCall:
    """A `/v1/score` PRM call: the reward request, and the label ids to report against."""

    request: RewardRequest
    labels: tuple[int, int]


def parse_score(body: Any, delimiter: str) -> ScoreCall:
    """`query` = the prompt, `items` = [the path with the step token after every step]."""
    check_keys(body, SCORE_FIELDS, SGLANG_ONLY_SCORE, "ScoringRequest")
    query = _str(body, "query")
    items = body.get("items")
    if not isinstance(items, list) or len(items) != 1 or not isinstance(items[0], str):
        raise BadRequest("spex serve scores one path per call: `items` must be [path]")
    token = _str(body, "score_extraction_token")
    if not token:
        raise BadRequest("`score_extraction_token` must not be empty")
    labels = body.get("label_token_ids")
    if (
        not isinstance(labels, list)
        or len(labels) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in labels)
    ):
        raise BadRequest("`label_token_ids` must be [good_label_id, bad_label_id]")
    if body.get("apply_softmax") is not True:
        raise BadRequest("spex serve returns probabilities only: set `apply_softmax: true`")
    if token in query:
        raise BadRequest("the score-extraction token must not occur in the query")
    parts = items[0].split(token)
    if parts[-1] != "":
        raise BadRequest("the item must end with the score-extraction token (one after each step)")
    request = RewardRequest(
        request_id=uuid.uuid4().hex,
        prompt=query,
        steps=tuple(parts[:-1]),
        step_delimiter=delimiter,
    )
    return ScoreCall(request, (labels[0], labels[1]))


def parse_abort(body: Any) -> tuple[str, bool]:
    """`/abort_request`: the rid to abort, or `abort_all`."""
    check_keys(body, ABORT_FIELDS, (), "AbortReq")
    rid = body.get("rid", "")
    if not isinstance(rid, str):
        raise BadRequest(f"invalid type: `rid` must be a string, got {rid!r}")
    abort_all = body.get("abort_all", False)
    if not isinstance(abort_all, bool):
        raise BadRequest("invalid type: `abort_all` must be a boolean")
    return rid, abort_all

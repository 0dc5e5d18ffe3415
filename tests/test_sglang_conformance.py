"""Every body the sglang client sends uses only field names SGLang accepts.

The accepted names are copied here from the SGLang wheels (the wheels are not available in CI):
`pip download --no-deps sglang==0.5.23` and `sglang==0.5.3`, then the dataclass / struct fields of
the named classes in the named files. SGLang answers HTTP 400 to an unknown `sampling_params`
key (0.5.23: the schema `GenerateRequest.from_json_value` in `sglang/api/v1/api_types.py`, called
by `/generate` in `sglang/srt/entrypoints/http_server.py`; 0.5.3: `SamplingParams(**params)`
raises), and silently ignores unknown top-level keys, which is worse: a dropped seed or priority
would go unnoticed. 0.5.3 is the oldest release with both `priority` and `sampling_seed`.
"""

from __future__ import annotations

from typing import Any

from runtime.engines.protocol import (
    GenerateRequest,
    Priority,
    RewardRequest,
    SamplingParams,
)
from runtime.engines.sglang.rewards import (
    ClassifyStyle,
    PrefixScores,
    PrmStyle,
    parse_reward_style,
)
from runtime.engines.sglang.wire import PriorityValues, abort_body, generate_body
from runtime.serve import schema

# --- SGLang 0.5.23 ---------------------------------------------------------------------------

# sglang/api/v1/api_types.py, class GenerateRequest (the /generate JSON contract)
V0523_GENERATE = {
    "rid", "text", "input_ids", "stream", "sampling_params", "return_logprob",
    "logprob_start_len", "top_logprobs_num", "token_ids_logprob", "return_hidden_states",
    "return_text_in_logprobs", "bootstrap_host", "bootstrap_port", "bootstrap_room",
    "bootstrap_pair_key", "decode_tp_size", "routed_dp_rank", "disagg_prefill_dp_rank",
    "image_data", "mm_hashes", "video_data", "audio_data", "extra_key", "priority", "cache_salt",
    "require_reasoning", "lora_path", "session_params", "kv_hints", "routing_key",
    "max_thinking_tokens", "session_id", "custom_logit_processor", "custom_labels",
    "images_config", "return_prompt_token_ids", "routed_experts_start_len",
    "return_sampling_mask", "modalities",
}  # fmt: skip
# sglang/srt/managers/io_struct.py, class GenerateReqInput (the dataclass /generate parses into)
V0523_GENERATE_REQ_INPUT = {
    "rid", "session_id", "text", "input_ids", "input_embeds", "image_data", "video_data",
    "audio_data", "mm_hashes", "mm_content_hashes", "use_audio_in_video", "video_config",
    "sampling_params", "watermark", "return_logprob", "logprob_start_len", "top_logprobs_num",
    "token_ids_logprob", "return_sampling_mask", "sampling_logprobs_mode",
    "return_text_in_logprobs", "return_flat_raw_top_logprobs",
    "return_flat_raw_output_top_logprobs", "return_flat_raw_top_logprobs_b64", "stream",
    "log_metrics", "return_hidden_states", "return_routed_experts", "routed_experts_start_len",
    "return_indexer_topk", "modalities", "session_params", "lora_path", "lora_id",
    "custom_logit_processor", "positional_embed_overrides", "bootstrap_host", "bootstrap_port",
    "bootstrap_room", "bootstrap_pair_key", "decode_tp_size", "routed_dp_rank",
    "data_parallel_rank", "disagg_prefill_dp_rank", "routing_key", "conversation_id",
    "http_worker_ipc", "background", "require_reasoning", "max_thinking_tokens", "priority",
    "extra_key", "no_logs", "custom_labels", "return_bytes", "return_entropy",
    "return_prompt_token_ids", "external_trace_header", "received_time",
    "need_wait_for_mm_inputs", "num_items_assigned", "encoder_urls", "max_dynamic_patch",
    "min_dynamic_patch", "image_max_dynamic_patch", "video_max_dynamic_patch", "images_config",
    "mm_processor_kwargs", "multi_item_delimiter_indices", "token_indices_to_pool", "cache_salt",
    "kv_hints",
}  # fmt: skip
# sglang/api/v1/api_types.py, _FIELDS_SamplingParams (unknown keys: HTTP 400)
V0523_SAMPLING = {
    "max_new_tokens", "stop", "stop_token_ids", "stop_regex", "temperature", "top_p", "top_k",
    "min_p", "frequency_penalty", "presence_penalty", "repetition_penalty", "min_new_tokens",
    "n", "json_schema", "regex", "ebnf", "structural_tag", "ignore_eos", "skip_special_tokens",
    "spaces_between_special_tokens", "no_stop_trim", "stream_interval", "logit_bias",
    "sampling_seed", "custom_params", "beam_width", "watermark", "choice",
}  # fmt: skip
# sglang/srt/managers/io_struct.py, class EmbeddingReqInput (the body of /classify and /encode)
V0523_EMBEDDING = {
    "rid", "text", "input_ids", "input_embeds", "image_data", "video_data", "audio_data",
    "embed_override_token_id", "embed_overrides", "sampling_params", "log_metrics",
    "modalities", "is_cross_encoder_request", "lora_path", "lora_id",
    "positional_embed_overrides", "routing_key", "http_worker_ipc", "background", "priority",
    "dimensions", "return_pooled_hidden_states", "return_prompt_token_ids",
    "external_trace_header", "received_time", "multi_item_delimiter_indices",
    "token_indices_to_pool", "decision_layout",
}  # fmt: skip
# sglang/srt/managers/io_struct.py, class AbortReq and its base BaseReq (/abort_request)
V0523_ABORT = {"rid", "http_worker_ipc", "abort_all", "finished_reason", "abort_message",
               "weight_versions"}  # fmt: skip
# sglang/srt/entrypoints/openai/protocol.py, class ScoringRequest (/v1/score)
V0523_SCORING = {
    "query", "items", "embed_override_token_id", "query_embed_overrides",
    "item_embed_overrides", "label_token_ids", "apply_softmax", "temperature",
    "return_token_logprobs", "item_first", "return_pooled_hidden_states",
    "score_extraction_token", "model",
}  # fmt: skip

# --- SGLang 0.5.3 ----------------------------------------------------------------------------

# sglang/srt/managers/io_struct.py, class GenerateReqInput plus BaseReq.rid
V053_GENERATE = {
    "rid", "text", "input_ids", "input_embeds", "image_data", "video_data", "audio_data",
    "sampling_params", "return_logprob", "logprob_start_len", "top_logprobs_num",
    "token_ids_logprob", "return_text_in_logprobs", "stream", "log_metrics",
    "return_hidden_states", "modalities", "session_params", "lora_path", "lora_id",
    "custom_logit_processor", "bootstrap_host", "bootstrap_port", "bootstrap_room",
    "bootstrap_pair_key", "data_parallel_rank", "background", "conversation_id", "priority",
    "extra_key", "no_logs", "custom_labels", "return_bytes",
}  # fmt: skip
# sglang/srt/sampling/sampling_params.py, SamplingParams.__init__ arguments
V053_SAMPLING = {
    "max_new_tokens", "stop", "stop_token_ids", "temperature", "top_p", "top_k", "min_p",
    "frequency_penalty", "presence_penalty", "repetition_penalty", "min_new_tokens", "n",
    "json_schema", "regex", "ebnf", "structural_tag", "ignore_eos", "skip_special_tokens",
    "spaces_between_special_tokens", "no_stop_trim", "custom_params", "stream_interval",
    "logit_bias", "sampling_seed",
}  # fmt: skip
# sglang/srt/managers/io_struct.py, class EmbeddingReqInput plus BaseReq.rid
V053_EMBEDDING = {
    "rid", "text", "image_data", "video_data", "audio_data", "input_ids", "sampling_params",
    "input_embeds", "log_metrics", "modalities", "is_cross_encoder_request", "priority",
    "background", "trace_context",
}  # fmt: skip
# sglang/srt/managers/io_struct.py, class AbortReq plus BaseReq.rid
V053_ABORT = {"rid", "abort_all", "finished_reason", "abort_reason"}


PLAIN = GenerateRequest("q1/0", "Solve 2+2.\n", SamplingParams())
FULL = GenerateRequest(
    "q1/0.3",
    "Solve 2+2.\nStep 1.\n\n",
    SamplingParams(256, 0.7, 0.95, 20, ("\n\n", "The answer is"), 1234),
    Priority.SPECULATIVE,
)
HIGH_FIRST = PriorityValues.for_server(low_values_first=False, preemption_threshold=10)
LOW_FIRST = PriorityValues.for_server(low_values_first=True, preemption_threshold=3)


def _generate_bodies() -> list[dict[str, Any]]:
    return [generate_body(r, p) for r in (PLAIN, FULL) for p in (None, HIGH_FIRST, LOW_FIRST)]


def _reward_request() -> RewardRequest:
    return RewardRequest("r1", "Solve 2+2.\n", ("Step 1.", "The answer is: 4"), "\n\n")


def test_generate_bodies_use_only_fields_every_supported_sglang_accepts() -> None:
    for body in _generate_bodies():
        assert set(body) <= V0523_GENERATE & V0523_GENERATE_REQ_INPUT & V053_GENERATE, body
        assert set(body["sampling_params"]) <= V0523_SAMPLING & V053_SAMPLING, body


def test_generate_body_carries_seed_stops_and_priorities_in_the_servers_order() -> None:
    body = generate_body(FULL, HIGH_FIRST)
    assert body["sampling_params"]["sampling_seed"] == 1234
    assert body["sampling_params"]["stop"] == ["\n\n", "The answer is"]
    # higher values run first by default; main must beat speculative by more than the
    # preemption threshold so that it may also preempt running speculative work
    assert body["priority"] == 0
    assert generate_body(PLAIN, HIGH_FIRST)["priority"] == 11
    assert generate_body(PLAIN, LOW_FIRST)["priority"] == 0
    assert generate_body(FULL, LOW_FIRST)["priority"] == 4
    assert "priority" not in generate_body(PLAIN, None)


def test_abort_body_uses_only_abort_fields() -> None:
    assert set(abort_body("q1/0.3")) <= V0523_ABORT & V053_ABORT


def test_classify_body_uses_only_embedding_fields() -> None:
    style = parse_reward_style("classify")
    assert isinstance(style, ClassifyStyle)
    for priority in (None, 11):
        body = style.prepare(_reward_request(), priority, PrefixScores()).body
        assert body is not None
        assert set(body) <= V0523_EMBEDDING & V053_EMBEDDING, body
        assert body["text"] == [
            "Solve 2+2.\n",
            "Solve 2+2.\nStep 1.\n\n",
            "Solve 2+2.\nStep 1.\n\nThe answer is: 4\n\n",
        ]
        assert body["rid"] == ["r1#0", "r1#1", "r1#2"]


def test_prm_body_uses_only_scoring_fields() -> None:
    style = parse_reward_style("prm:labels=648/387,tag= ки\\n,token=▁ки")
    assert isinstance(style, PrmStyle)
    body = style.prepare(_reward_request(), None, PrefixScores()).body
    assert body is not None
    assert set(body) <= V0523_SCORING, body
    assert body["items"] == ["Step 1. ки\nThe answer is: 4 ки\n"]
    assert body["score_extraction_token"] == "▁ки"
    assert body["label_token_ids"] == [648, 387]


def test_spex_serve_accepts_only_sglang_fields_and_names_the_rest_truthfully() -> None:
    generate_known = V0523_GENERATE | V0523_GENERATE_REQ_INPUT
    assert set(schema.GENERATE_FIELDS) <= generate_known
    assert set(schema.SGLANG_ONLY_GENERATE) <= generate_known
    assert set(schema.SAMPLING_FIELDS) <= V0523_SAMPLING
    assert set(schema.SGLANG_ONLY_SAMPLING) <= V0523_SAMPLING
    assert set(schema.CLASSIFY_FIELDS) <= V0523_EMBEDDING
    assert set(schema.SGLANG_ONLY_CLASSIFY) <= V0523_EMBEDDING
    assert set(schema.ABORT_FIELDS) <= V0523_ABORT
    assert set(schema.SCORE_FIELDS) <= V0523_SCORING
    assert set(schema.SGLANG_ONLY_SCORE) <= V0523_SCORING

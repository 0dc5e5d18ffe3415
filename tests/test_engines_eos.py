"""End of sequence is its own finish reason, distinct from a stop string, on every engine.

The sim ends a solution's final answer step with EOS; SGLang reports an end-of-sequence token as
`{"type": "stop", "matched": <token id>}` and a stop string as `{"type": "stop", "matched":
"<the string>"}`: spex serve answers that way and spex's SGLang client reads it back.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from compiler.expr import Value, evaluate
from compiler.ir import AnswerAttrs, LeafAttrs, OpKind, RoleKind
from compiler.load import load_program
from runtime.engines.protocol import (
    EngineError,
    FinishReason,
    GenerateRequest,
    GenerateResult,
    SamplingParams,
)
from runtime.engines.sglang.engine import SglangConfig, SglangEngine
from runtime.engines.sglang.wire import finish_reason_of
from runtime.engines.sim import SimEngine
from runtime.engines.sim.task import SyntheticTask
from runtime.serve.app import ServeConfig
from runtime.serve.runner import serving

QUESTION = "What is 17 + 25?"
ANSWERS = {QUESTION: "42"}
PROMPT = f"Solve step by step.\n\n{QUESTION}\n"
DELIM = "\n\n"
PROGRAMS = sorted((Path(__file__).resolve().parents[1] / "programs").glob("*.spx"))


def _sim_steps() -> list[tuple[str, FinishReason, bool]]:
    """(text, finish reason, terminal) of every step along 100 sim paths to their answers."""
    task = SyntheticTask(ANSWERS, seed=0)
    steps = []
    for seed in range(100):
        text = PROMPT
        for _ in range(40):
            step = task.step(text, DELIM, seed, 4096)
            steps.append((step.text, step.finish_reason, step.child.terminal))
            if step.child.terminal:
                break
            text += step.text + DELIM
    return steps


def test_the_sims_final_answer_step_ends_the_sequence_and_other_steps_a_stop_string() -> None:
    reasons: dict[bool, set[FinishReason]] = {True: set(), False: set()}
    for text, reason, terminal in _sim_steps():
        reasons[terminal].add(reason)
        assert text.startswith("The answer is: ") == terminal
    assert reasons == {True: {FinishReason.EOS}, False: {FinishReason.STOP}}


@pytest.mark.parametrize("program", PROGRAMS, ids=lambda p: p.stem)
def test_an_eos_step_of_the_sim_is_already_a_leaf_in_every_shipped_program(program: Path) -> None:
    # So making EOS nodes leaves changes no shipped program's tree or answer on the sim.
    graph = load_program(program)
    answer, leaf = graph.only(OpKind.ANSWER).attrs, graph.only(OpKind.LEAF_TEST).attrs
    assert isinstance(answer, AnswerAttrs) and isinstance(leaf, LeafAttrs)
    pattern = re.compile(answer.pattern)
    eos_texts = [text for text, reason, _ in _sim_steps() if reason is FinishReason.EOS]
    assert eos_texts
    for text in eos_texts:
        answered = pattern.search(text) is not None
        names: dict[str, Value] = {"depth": 1, "tokens": 1, "answered": answered}
        names.update({r.name: 0.5 for r in graph.roles if r.kind is RoleKind.REWARD})
        assert answered and evaluate(leaf.condition, names) is True


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ({"type": "stop", "matched": 2}, FinishReason.EOS),
        ({"type": "stop", "matched": [151645, 151643]}, FinishReason.EOS),
        ({"type": "stop", "matched": "\n\n"}, FinishReason.STOP),
        ({"type": "stop", "matched": None}, FinishReason.STOP),
        ({"type": "stop"}, FinishReason.STOP),
        ({"type": "stop", "matched": True}, FinishReason.STOP),
        ({"type": "length", "length": 16}, FinishReason.LENGTH),
        ({"type": "abort", "message": "gone"}, FinishReason.ABORT),
    ],
)
def test_sglang_finish_reasons_tell_an_eos_token_from_a_stop_string(
    reason: dict[str, Any], expected: FinishReason
) -> None:
    assert finish_reason_of({"finish_reason": reason})[0] is expected


def test_an_unknown_sglang_finish_reason_is_an_engine_error() -> None:
    with pytest.raises(EngineError, match="unexpected finish_reason"):
        finish_reason_of({"finish_reason": {"type": "exploded"}})


def _step(rid: str, text: str, seed: int) -> GenerateRequest:
    return GenerateRequest(rid, text, SamplingParams(256, 0.8, stop=(DELIM,), seed=seed))


async def _path_to_an_answer(generate: Any, seed: int) -> list[GenerateResult]:
    """Steps along one path (the same seed at every depth) until the sequence ends."""
    text, results = PROMPT, []
    for depth in range(40):
        result: GenerateResult = await generate(_step(f"n{depth}", text, seed))
        results.append(result)
        if result.finish_reason is not FinishReason.STOP:
            break
        text += result.text + DELIM
    return results


def test_spex_serve_reports_eos_as_a_token_match_and_the_client_reads_it_back() -> None:
    def sim() -> SimEngine:
        return SimEngine("h100-7b", seed=0, answers=ANSWERS, time_scale=1000.0)

    async def main() -> None:
        reference = await _path_to_an_answer(sim().generate, seed=5)
        assert reference[-1].finish_reason is FinishReason.EOS
        assert {r.finish_reason for r in reference[:-1]} <= {FinishReason.STOP}
        async with serving(sim(), ServeConfig(engine_label="sim:h100-7b")) as (url, _):
            async with aiohttp.ClientSession() as session:
                raw: list[Any] = []
                text = PROMPT
                for result in reference:
                    body = {
                        "text": text,
                        "rid": f"raw{len(raw)}",
                        "sampling_params": {"max_new_tokens": 256, "temperature": 0.8,
                                            "stop": [DELIM], "sampling_seed": 5},
                    }  # fmt: skip
                    async with session.post(url + "/generate", json=body) as response:
                        raw.append((await response.json())["meta_info"]["finish_reason"])
                    text += result.text + DELIM
            last = raw[-1]
            assert last["type"] == "stop" and isinstance(last["matched"], int)
            assert all(r == {"type": "stop", "matched": DELIM} for r in raw[:-1])
            client = SglangEngine(SglangConfig(policy_urls=(url,)))
            await client.start()
            try:
                over_http = await _path_to_an_answer(client.generate, seed=5)
            finally:
                await client.close()
        assert [(r.text, r.finish_reason) for r in over_http] == [
            (r.text, r.finish_reason) for r in reference
        ]

    asyncio.run(main())

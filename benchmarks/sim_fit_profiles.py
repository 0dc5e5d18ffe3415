"""Fit the sim engine's cost profiles and task parameters from measurements; write them out.

Run from the repository root:

    .venv/bin/python benchmarks/sim_fit_profiles.py [--data ../shared/data]

Writes runtime/engines/sim/profiles/{h100-7b,a100-7b,cpu-smollm}.json and
runtime/engines/sim/fitted_task.py. Sources:

- GPU linear ops: Vidur's per-layer operator timings for Llama-2-7B (MIT, Agrawal et al., MLSys
  2024), tensor parallel 1, medians summed over the 32 layers (the calibration README's recipe),
  fitted by least squares with a piecewise-linear curve (hinge basis at fixed knots). Attention
  is not in those files: decode attention is memory traffic (512 KiB of K/V per cached token at
  the HBM bandwidth times an efficiency), prefill attention is FLOPs (4 * layers * d_model per
  query-key pair at the bf16 peak times an efficiency). The LM head is a roofline term.
- GPU datasheets: H100 SXM 3.35 TB/s HBM3, 989 TFLOP/s dense bf16, 80 GB; A100 80GB SXM
  2.039 TB/s, 312 TFLOP/s dense bf16, 80 GB.
- CPU: ../shared/design/cpu-measurements.md (SmolLM2-135M fp32 on 2 EPYC cores).
- Task: MATH-500 reference solutions split into steps at blank lines and sentence ends.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PROFILE_DIR = REPO / "runtime" / "engines" / "sim" / "profiles"
TASK_MODULE = REPO / "runtime" / "engines" / "sim" / "fitted_task.py"
COMMAND = "python benchmarks/sim_fit_profiles.py --data ../shared/data"

LLAMA2_7B = {
    "layers": 32,
    "d_model": 4096,
    "vocab": 32000,
    "weights_bytes": 13.5e9,
    "kv_bytes_per_token": 2 * 32 * 4096 * 2,  # K and V, 32 layers, 4096 wide, bf16: 512 KiB
}
GPUS = {
    "h100": {"hbm_bytes_s": 3.35e12, "bf16_flops": 989e12, "memory_bytes": 80e9},
    "a100": {"hbm_bytes_s": 2.039e12, "bf16_flops": 312e12, "memory_bytes": 80e9},
}
# Assumptions (not measured here), stated once: decode attention kernels reach ~80% of HBM
# bandwidth and prefill attention ~50% of the dense bf16 peak (FlashAttention-2 reports 50-70%
# of peak); SGLang's static memory fraction keeps ~85% of GPU memory for weights plus KV cache,
# minus ~2 GB for activations and CUDA graphs; 256 running requests is the engine's batch cap
# (an engine setting, overridable with max_running_requests); chunked prefill of 8192 tokens
# is SGLang's default on 80 GB GPUs.
HBM_EFFICIENCY = 0.8
ATTN_FLOP_EFFICIENCY = 0.5
MEMORY_FRACTION = 0.85
ACTIVATION_BYTES = 2e9
GPU_MAX_RUNNING = 256
GPU_MAX_PREFILL = 8192
GPU_KNOTS = (1, 32, 64, 128, 256, 512, 1024, 2048, 4096)
LINEAR_OPS = (
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
)

# cpu-measurements.md: ms per decode step at batch 1/4/16/64 (100-token prompts, 64 new tokens).
CPU_DECODE_MS = {1: 87.0, 4: 176.0, 16: 290.0, 64: 629.0}
# Prefill timings (total tokens, seconds): separate 100-token prompts at batch 1/4/16/64, and a
# single 500-token prompt ("~2.4 s", i.e. ~210 tokens/s).
CPU_PREFILL = ((100, 0.613), (400, 1.732), (1600, 6.831), (6400, 26.502), (500, 2.4))
# SmolLM2-135M: 30 layers, 3 KV heads of 64 dims, K and V in fp32 -> 46,080 bytes per token. We
# give the KV cache 4 GiB of the machine's 24 GiB.
SMOLLM_KV_BYTES_PER_TOKEN = 2 * 30 * 3 * 64 * 4
CPU_KV_BYTES = 4 * 2**30
CPU_MAX_RUNNING = 64  # the largest measured batch
CPU_MAX_PREFILL = 2048

# Characters per token for LaTeX-heavy maths text (denser than English prose's ~4).
CHARS_PER_TOKEN = 3.5
# Instruct models write step-by-step solutions about twice as many steps as MATH's terse
# references (PRM800K's GPT-4 solutions average ~10 steps against ~4 sentences here).
SOLUTION_STEPS_SCALE = 2.0


def vidur_linear_ms(path: Path) -> dict[int, float]:
    """num_tokens -> ms of the linear ops of one forward, summed over 32 layers (TP 1)."""
    totals: dict[int, float] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["num_tensor_parallel_workers"] != "1":
                continue
            per_layer = sum(float(row[f"time_stats.{op}.median"]) for op in LINEAR_OPS)
            emb = float(row["time_stats.emb.median"])
            totals[int(row["num_tokens"])] = per_layer * LLAMA2_7B["layers"] + emb
    return totals


def fit_piecewise(points: dict[int, float], knots: tuple[int, ...]) -> list[float]:
    """Least-squares values at `knots` of a continuous piecewise-linear curve through points."""
    xs = np.array(sorted(points), dtype=float)
    ys = np.array([points[int(x)] for x in xs], dtype=float)
    # Hinge basis: 1, x, max(0, x - k) for interior knots.
    cols = [np.ones_like(xs), xs] + [np.maximum(0.0, xs - k) for k in knots[1:-1]]
    basis = np.stack(cols, axis=1)
    coef, *_ = np.linalg.lstsq(basis, ys, rcond=None)
    kn = np.array(knots, dtype=float)
    kcols = [np.ones_like(kn), kn] + [np.maximum(0.0, kn - k) for k in knots[1:-1]]
    fitted = np.stack(kcols, axis=1) @ coef
    residual = float(np.sqrt(np.mean((basis @ coef - ys) ** 2)))
    print(f"    piecewise fit rms residual {residual:.3f} ms over {len(xs)} points")
    return [float(v) for v in fitted]


def gpu_server(gpu: str, csv_path: Path) -> dict[str, Any]:
    spec = GPUS[gpu]
    model = LLAMA2_7B
    print(f"  {gpu}: fitting {csv_path.name}")
    ms = fit_piecewise(vidur_linear_ms(csv_path), GPU_KNOTS)
    head_bytes = 2 * model["d_model"] * model["vocab"]

    def lm_head_s(tokens: float) -> float:
        flops = 2 * model["d_model"] * model["vocab"] * tokens
        return max(
            head_bytes / (spec["hbm_bytes_s"] * HBM_EFFICIENCY),
            flops / (spec["bf16_flops"] * ATTN_FLOP_EFFICIENCY),
        )

    # Decode: every sequence samples one token, so the LM head runs on B rows. Prefill: only
    # the last position of each prompt needs logits; one row per pass is the common case.
    decode = [m / 1e3 + lm_head_s(k) for k, m in zip(GPU_KNOTS, ms, strict=True)]
    prefill = [m / 1e3 + lm_head_s(1) for m in ms]
    kv_tokens = int(
        (spec["memory_bytes"] * MEMORY_FRACTION - model["weights_bytes"] - ACTIVATION_BYTES)
        / model["kv_bytes_per_token"]
    )
    return {
        "decode_s": {"tokens": list(GPU_KNOTS), "seconds": _round(decode)},
        "prefill_s": {"tokens": list(GPU_KNOTS), "seconds": _round(prefill)},
        "decode_attn_s_per_context_token": model["kv_bytes_per_token"]
        / (spec["hbm_bytes_s"] * HBM_EFFICIENCY),
        "prefill_attn_s_per_token_pair": 4
        * model["layers"]
        * model["d_model"]
        / (spec["bf16_flops"] * ATTN_FLOP_EFFICIENCY),
        "max_running_requests": GPU_MAX_RUNNING,
        "kv_capacity_tokens": kv_tokens,
        "max_prefill_tokens": GPU_MAX_PREFILL,
    }


def cpu_server() -> dict[str, Any]:
    batches = sorted(CPU_DECODE_MS)
    tokens = np.array([t for t, _ in CPU_PREFILL], dtype=float)
    seconds = np.array([s for _, s in CPU_PREFILL], dtype=float)
    slope, intercept = np.polyfit(tokens, seconds, 1)
    print(f"  cpu: prefill {intercept * 1e3:.0f} ms + {slope * 1e3:.2f} ms/token")
    prefill_knots = [1, 8192]
    return {
        # The decode measurements are the curve's knots; they include attention over the
        # measured ~100-164-token contexts, so the per-context-token term is left at 0.
        "decode_s": {
            "tokens": batches,
            "seconds": _round([CPU_DECODE_MS[b] / 1e3 for b in batches]),
        },
        "prefill_s": {
            "tokens": prefill_knots,
            "seconds": _round([intercept + slope * k for k in prefill_knots]),
        },
        "decode_attn_s_per_context_token": 0.0,
        "prefill_attn_s_per_token_pair": 0.0,
        "max_running_requests": CPU_MAX_RUNNING,
        "kv_capacity_tokens": CPU_KV_BYTES // SMOLLM_KV_BYTES_PER_TOKEN,
        "max_prefill_tokens": CPU_MAX_PREFILL,
    }


def fit_task(data: Path) -> dict[str, float]:
    """Lognormal fits of step length (tokens) and steps per solution from MATH-500."""
    step_logs: list[float] = []
    count_logs: list[float] = []
    with (data / "math500.jsonl").open() as handle:
        for line in handle:
            solution = json.loads(line)["solution"].strip()
            steps = [s for s in re.split(r"\n\s*\n|(?<=[.!?])\s+(?=[A-Z])", solution) if s.strip()]
            count_logs.append(math.log(len(steps)))
            step_logs += [math.log(max(1.0, len(s) / CHARS_PER_TOKEN)) for s in steps]
    return {
        "STEP_TOKENS_LOG_MEAN": float(np.mean(step_logs)),
        "STEP_TOKENS_LOG_SD": float(np.std(step_logs, ddof=1)),
        "SOLUTION_STEPS_LOG_MEAN": float(np.mean(count_logs) + math.log(SOLUTION_STEPS_SCALE)),
        "SOLUTION_STEPS_LOG_SD": float(np.std(count_logs, ddof=1)),
    }


def _round(values: list[float]) -> list[float]:
    return [float(f"{v:.6g}") for v in values]


def gpu_profile(gpu: str, calibration: Path) -> dict[str, Any]:
    server = gpu_server(gpu, calibration / f"vidur-{gpu}-llama2-7b-mlp.csv")
    return {
        "name": f"{gpu}-7b",
        "description": (
            f"A 7B policy (Llama-2-7B shape, bf16) on one {gpu.upper()} 80GB and a 7B process "
            f"reward model of the same shape on a second {gpu.upper()}, served by an SGLang-like "
            "engine with continuous batching and a radix prefix cache."
        ),
        "sources": [
            f"linear ops: ../shared/data/calibration/vidur-{gpu}-llama2-7b-mlp.csv "
            "(Vidur, MIT), TP 1 medians summed over 32 layers, piecewise-linear least squares",
            f"attention and LM head: roofline from the {gpu.upper()} datasheet "
            f"(HBM {GPUS[gpu]['hbm_bytes_s'] / 1e12:.3g} TB/s at {HBM_EFFICIENCY:.0%}, "
            f"bf16 {GPUS[gpu]['bf16_flops'] / 1e12:.0f} TFLOP/s at "
            f"{ATTN_FLOP_EFFICIENCY:.0%}); KV 512 KiB per token (Llama-2-7B)",
            f"KV capacity: 80 GB x {MEMORY_FRACTION} - 13.5 GB weights - 2 GB activations",
            "reward model: the same 7B cost model (a PRM such as math-shepherd-mistral-7b)",
        ],
        "generated_by": COMMAND,
        "policy": server,
        "reward": server,
    }


def cpu_profile() -> dict[str, Any]:
    server = cpu_server()
    return {
        "name": "cpu-smollm",
        "description": (
            "SmolLM2-135M-Instruct (fp32) on 2 CPU cores, the local engine's default model; "
            "the reward is one forward pass of the same model (a self-judgement)."
        ),
        "sources": [
            "decode and prefill: ../shared/design/cpu-measurements.md (torch 2.13 CPU, 2 threads)",
            "KV: 30 layers x 3 KV heads x 64 dims x K,V x fp32 = 45 KiB per token, 4 GiB budget",
        ],
        "generated_by": COMMAND,
        "policy": server,
        "reward": server,
    }


def write_task_module(params: dict[str, float]) -> None:
    lines = [
        '"""Synthetic-task parameters fitted from MATH-500 reference solutions (generated file).',
        "",
        f"Produced by `{COMMAND}`:",
        "reference solutions split into steps at blank lines and sentence ends,",
        f"{CHARS_PER_TOKEN} characters per token; the steps-per-solution fit is scaled by",
        f"{SOLUTION_STEPS_SCALE} for instruct models' more verbose solutions.",
        '"""',
        "",
    ]
    lines += [f"{k} = {v:.6g}" for k, v in params.items()]
    TASK_MODULE.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args()
    calibration = args.data / "calibration"
    PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    profiles = [gpu_profile("h100", calibration), gpu_profile("a100", calibration), cpu_profile()]
    for profile in profiles:
        path = PROFILE_DIR / f"{profile['name']}.json"
        path.write_text(json.dumps(profile, indent=2) + "\n")
        print(f"wrote {path.relative_to(REPO)}")
    params = fit_task(args.data)
    write_task_module(params)
    print(f"wrote {TASK_MODULE.relative_to(REPO)}: {params}")


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# sync vs spec on the embedded local CPU model (SmolLM2-135M), REBASE and beam search, 8 questions
# of the built-in arithmetic sample, concurrency 1. Small widths keep it to ~40 minutes on 2 cores.
# Results: OUT/rebase/bench.json and OUT/beam/bench.json (plus per-mode results JSONL).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/local-bench}
export HF_HUB_OFFLINE=1
.venv/bin/spex bench programs/rebase.spx --engine local -p width=4 -p max_tokens=512 \
    --limit 8 --concurrency 1 --modes sync,spec -o "$out/rebase"
.venv/bin/spex bench programs/beam_search.spx --engine local -p n=4 -p m=2 -p max_depth=6 \
    --limit 8 --concurrency 1 --modes sync,spec -o "$out/beam"

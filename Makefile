# Entry points. Every target sets up what it needs first (idempotent).
#   make demo                       the embedded default end to end (CPU, minutes)
#   make test                       the test suite (offline)
#   make train RECIPE=llama3-dialogsum [DATA_DIR=...] [GPUS=8 STRATEGY=zero2] [OVERRIDES="max_steps=100"]
#   make eval RECIPE=...            base vs fine-tuned report in runs/<recipe>/eval/ [CHECKPOINT=best|<step>]
#   make eval-checkpoints RECIPE=... every checkpoint scored by ROUGE on the validation split
#   make sweep RECIPE=... SWEEP="learning_rate=1e-4,3e-4 lora_r=8,16"   a grid, chosen by ROUGE
#   make merge RECIPE=...           merged model in runs/<recipe>/merged/
#   make check RECIPE=...           validate recipe and data, load no model
#   make compare RUNS="runs/a runs/b"   one table of several evaluated runs
#   make serve RECIPE=... [PORT=8000] [HOST=0.0.0.0 with VLLM_API_KEY set]   base + adapter behind vLLM's OpenAI-compatible server
#   make summarize RECIPE=... FILE=dialogues.jsonl   one summary per line, from the served model (resumable)
#   make bench-eval / bench-tokenize / bench-train (GPU) DATA_DIR=...   the benchmarks (benchmarks/)
#   make bench-serve RECIPE=... DATA_DIR=... [CONCURRENCY=1,8,32,128]   the served model under load

SHELL := /bin/bash
RECIPE ?= smollm2-dialogsum
OVERRIDES ?=
TRAIN_PY := .venv/train/bin/python
EVAL_PY := .venv/eval/bin/python
export AXOLOTL_DO_NOT_TRACK := 1
export DATA_DIR GPUS STRATEGY MACHINES MACHINE_RANK MAIN_IP MAIN_PORT
NEED_DATA = $(or $(DATA_DIR),$(error set DATA_DIR to a folder holding dialogsum/ and samsum/ (see the README: Data)))

RUN_FLAGS := $(if $(RUN_DIR),--run-dir $(RUN_DIR)) $(if $(filter 1 yes true,$(OVERWRITE)),--overwrite)
EVAL_FLAGS := $(if $(RUN_DIR),--run-dir $(RUN_DIR)) $(if $(EVAL_DIR),--out-dir $(EVAL_DIR)) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(LIMIT),--limit $(LIMIT)) $(if $(BACKEND),--backend $(BACKEND)) $(if $(ADAPTER_MODE),--adapter-mode $(ADAPTER_MODE)) $(if $(filter 1 yes true,$(DETERMINISTIC)),--deterministic) $(if $(SPLIT),--split $(SPLIT)) $(if $(BEAMS),--num-beams $(BEAMS))

.PHONY: demo test train eval eval-checkpoints sweep serve summarize publish merge check compare setup env-train env-eval model lint format bench-tokenize bench-eval bench-train bench-serve bundle bundle-install

demo: setup
	HF_HUB_OFFLINE=1 $(TRAIN_PY) scripts/train.py smollm2-dialogsum --data-dir data/demo --run-dir runs/demo --overwrite
	HF_HUB_OFFLINE=1 $(EVAL_PY) scripts/evaluate.py smollm2-dialogsum --run-dir runs/demo
	@$(EVAL_PY) scripts/compare.py runs/demo
	@echo "full report: runs/demo/eval/report.html (and report.md, metrics.json, predictions.jsonl)"

test: setup
	bash scripts/run_tests.sh

setup: env-train env-eval model

env-train:
	@bash scripts/setup_env.sh train

env-eval:
	@bash scripts/setup_env.sh eval

model: env-train
	@HF_HUB_OFFLINE=1 $(TRAIN_PY) scripts/materialize_models.py

train: env-train model
	$(TRAIN_PY) scripts/train.py $(RECIPE) $(OVERRIDES) $(RUN_FLAGS)

check: env-train model
	$(TRAIN_PY) scripts/train.py $(RECIPE) $(OVERRIDES) $(RUN_FLAGS) --check

eval: env-eval
	$(EVAL_PY) scripts/evaluate.py $(RECIPE) $(EVAL_FLAGS) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT))

eval-checkpoints: env-eval
	$(EVAL_PY) scripts/eval_checkpoints.py $(RECIPE) $(EVAL_FLAGS) $(if $(ENGINES),--engines $(ENGINES))

# every point a normal run in SWEEP_DIR (default runs/<recipe>-sweep/); run again to resume
sweep: env-train env-eval model
	$(EVAL_PY) scripts/sweep.py $(RECIPE) "$(or $(SWEEP),$(error set SWEEP, e.g. SWEEP="learning_rate=1e-4,3e-4 lora_r=8,16"))" $(OVERRIDES) \
	  --train-python $(TRAIN_PY) --eval-python $(EVAL_PY) $(if $(SWEEP_DIR),--out-dir $(SWEEP_DIR)) \
	  $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(LIMIT),--limit $(LIMIT)) $(if $(BACKEND),--backend $(BACKEND)) \
	  $(if $(PARALLEL),--parallel $(PARALLEL))

serve: env-eval
	$(EVAL_PY) scripts/serve.py $(RECIPE) $(if $(RUN_DIR),--run-dir $(RUN_DIR)) --port $(or $(PORT),8000) $(if $(HOST),--host $(HOST)) \
	  $(if $(filter 1 yes true,$(DETERMINISTIC)),--deterministic)

summarize: env-eval
	$(EVAL_PY) scripts/summarize.py $(RECIPE) $(or $(FILE),$(error set FILE to a JSON-lines file of records with a dialogue field)) $(if $(RUN_DIR),--run-dir $(RUN_DIR)) --url http://$(or $(HOST),127.0.0.1):$(or $(PORT),8000) $(if $(OUT),--out $(OUT))

publish: env-eval
	$(EVAL_PY) scripts/publish.py $(or $(EVAL_DIR),$(or $(RUN_DIR),runs/$(RECIPE))/eval) results/predictions/$(or $(NAME),$(RECIPE)).jsonl

merge: env-train
	$(TRAIN_PY) scripts/merge.py $(RECIPE) $(if $(RUN_DIR),--run-dir $(RUN_DIR))

compare: env-eval
	$(EVAL_PY) scripts/compare.py $(if $(filter 1 yes true,$(TEXTS)),--texts) $(or $(RUNS),runs/*)

lint: env-train
	.venv/train/bin/ruff check . && .venv/train/bin/ruff format --check .

format: env-train
	.venv/train/bin/ruff format . && .venv/train/bin/ruff check --fix .

bench-tokenize: env-train model
	HF_HUB_OFFLINE=1 $(TRAIN_PY) -m benchmarks.tokenize_throughput --data-dir $(NEED_DATA)

bench-eval: env-eval model
	HF_HUB_OFFLINE=1 $(EVAL_PY) -m benchmarks.eval_throughput --data-dir $(NEED_DATA) $(if $(LIMIT),--limit $(LIMIT))

# vLLM's own `vllm bench serve` against `make serve`'s server (started for the run, or URL=),
# base and finetuned at each CONCURRENCY level; one table in <run dir>/serve-bench.md (or OUT=)
bench-serve: env-eval model
	HF_HUB_OFFLINE=1 $(EVAL_PY) -m benchmarks.serve_load $(RECIPE) --data-dir $(NEED_DATA) $(if $(RUN_DIR),--run-dir $(RUN_DIR)) \
	  $(if $(CONCURRENCY),--concurrency $(CONCURRENCY)) $(if $(LIMIT),--num-prompts $(LIMIT)) $(if $(URL),--url $(URL)) $(if $(OUT),--out $(OUT))

# GPU: plain QLoRA loops (the notes' shape, and the recipe's packed shape) vs the
# llama3-dialogsum recipe in both memory modes, same data, one run. The
# default model is Llama-3-8B-shaped with random weights (speed depends on shapes only).
BENCH_MODEL ?= .cache/models/llama3-8b-random
bench-train: env-train model
	@test -d $(BENCH_MODEL) || $(TRAIN_PY) scripts/make_random_model.py --config-dir .cache/models/llama3-tokenizer --out $(BENCH_MODEL)
	HF_HUB_OFFLINE=1 $(TRAIN_PY) -m benchmarks.train_throughput all --model $(BENCH_MODEL) --data-dir $(NEED_DATA) \
	  --variant default: --variant "gc:gradient_checkpointing=true"

# Air-gapped GPU nodes: wheels for the node's Python and platform (+ data, models) in parts
# of at most PART_SIZE, built here; installed there with no network. Needs only python3 + pip.
#   make bundle REQS=requirements/train-gpu.txt HAVE=node-freeze.txt DATA="path/to/data" PART_SIZE=2G
#   make bundle-install BUNDLE=bundle          (on the node)
bundle:
	PYTHONPATH=. python3 scripts/bundle.py build --out $(or $(OUT),bundle) -r $(or $(REQS),requirements/train-gpu.txt) \
	  --python-version $(or $(PYTHON_VERSION),3.12) --part-size $(or $(PART_SIZE),2G) $(if $(HAVE),--have $(HAVE)) \
	  $(foreach d,$(DATA),--data $(d)) $(foreach m,$(MODELS),--model $(m))

bundle-install:
	PYTHONPATH=. python3 scripts/bundle.py install $(or $(BUNDLE),bundle)

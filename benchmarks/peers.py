"""The training benchmark's peers: what a practitioner would otherwise run, timed in the same
call as the recipe, on the same model, the same DialogSum rows (tokenized by the ONE prompt
definition) and the same sequence length, by the same meter (benchmarks/train_meter.py).

- ``axolotl_example``: Axolotl's stock QLoRA example for Llama-3 (benchmarks/configs/), copied
  as a user would, through Axolotl's own command. Changed: the model, the data, the sequence
  length, the steps, the meter; and flash-attn 2 for PyTorch's SDPA where flash-attn is not
  installed (the change is recorded in its row).
- ``unsloth``: Unsloth's documented QLoRA path (benchmarks/unsloth_qlora.py), imported from the
  folder ``make env-peers`` fills from requirements/peers.txt.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import yaml

from training.paths import REPO

AXOLOTL_EXAMPLE = REPO / "benchmarks" / "configs" / "axolotl-llama-3-qlora.yml"
PEERS_DIR = REPO / ".venv" / "peers"  # make env-peers: Unsloth, kept out of the training environment
PEERS = ("axolotl_example", "unsloth")
METER = "benchmarks.train_meter.BenchMeter"  # the plugin that times every run of the benchmark


def recipe_rows(model_dir: Path, data_dir: Path, run_dir: Path) -> tuple[Path, str]:
    """The recipe's training rows, prepared as the runner prepares them, and the Axolotl prompt
    strategy that tokenizes them: the file and ``type:`` a peer's ``datasets:`` entry needs."""
    from benchmarks.train_throughput import RECIPE
    from training.recipe import resolve
    from training.runner import prepare_data

    resolved = resolve(RECIPE, [f"base_model={model_dir}", f"data.location={data_dir}"])
    prepare_data(resolved, run_dir)
    return run_dir / "data" / "train.jsonl", f"datasets_fmt.axolotl_{resolved.project['data']['format']}"


def flash_attn_installed() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def axolotl_example_config(
    model_dir: Path,
    rows: tuple[Path, str],
    sequence_len: int,
    steps: int,
    run_dir: Path,
    flash_attn: bool,
    cuda: bool,
) -> tuple[dict, list[str]]:
    """The stock example with only what a benchmark must change; the changes as table notes.
    Without a GPU it gets the CPU settings the runner gives every recipe (training/hardware.py)."""
    from training.hardware import adapt_to_cpu
    from training.recipe import add_plugin

    config = yaml.safe_load(AXOLOTL_EXAMPLE.read_text())
    train_file, strategy = rows
    config.update(
        base_model=str(model_dir),
        datasets=[{"path": str(train_file), "ds_type": "json", "type": strategy}],
        sequence_len=sequence_len,
        max_steps=steps,
        output_dir=str(run_dir / "adapter"),
        dataset_prepared_path=str(run_dir / "prepared"),
    )
    add_plugin(config, METER)
    changes = ["model", "data: the recipe's rows", f"sequence_len {sequence_len}", f"{steps} steps"]
    if config.get("attn_implementation") == "flash_attention_2" and not flash_attn:
        config["attn_implementation"] = "sdpa"
        changes.append("attention: sdpa (flash-attn not installed)")
    if not cuda:
        changes += adapt_to_cpu(config)
    return config, changes


def axolotl_example_command(config_file: Path) -> list[str]:
    """Axolotl's own train command, as its README gives it (one process)."""
    return [sys.executable, "-m", "axolotl.cli.train", str(config_file)]


def unsloth_command(model_dir: Path, data_dir: Path, steps: int, json_file: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "benchmarks.unsloth_qlora",
        "--model",
        str(model_dir),
        "--data-dir",
        str(data_dir),
        "--steps",
        str(steps),
        "--out",
        str(json_file),
    ]


def peer_environment(peers_dir: Path = PEERS_DIR) -> dict:
    """The repository (prompt strategies, the meter) and the peers' folder on the path."""
    if not (peers_dir / "unsloth").is_dir():
        raise FileNotFoundError(
            f"Unsloth is not in {peers_dir}: run `make env-peers` (requirements/peers.txt)"
        )
    path = [str(peers_dir), str(REPO), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(p for p in path if p)}

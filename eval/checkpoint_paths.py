"""Where a run's checkpoints are, and which one ``CHECKPOINT=best|<step>`` names."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

OUT_NAME = "eval-checkpoints"  # <run>/eval-checkpoints/: the checkpoints scored by ROUGE


class CheckpointError(ValueError):
    """A checkpoint that cannot be found: says which exist and how to score them."""


@dataclass(frozen=True)
class Checkpoint:
    step: int
    path: Path

    @property
    def name(self) -> str:
        return f"checkpoint-{self.step}"


# a whole model's weights as transformers saves them (one file, or an index of shards)
MODEL_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def holds_trained_weights(path: Path) -> bool:
    """A LoRA/QLoRA adapter, or the whole model where the run trained every weight (not a
    DeepSpeed checkpoint whose weights were never gathered into one model)."""
    if (path / "adapter_config.json").exists():
        return True
    return (path / "config.json").exists() and any((path / name).exists() for name in MODEL_WEIGHTS)


def find_checkpoints(run_dir: Path) -> list[Checkpoint]:
    """The run's saved checkpoints that hold an adapter (or a model: full fine-tuning), by step."""
    found = []
    for path in (run_dir / "adapter").glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if step.isdigit() and holds_trained_weights(path):
            found.append(Checkpoint(int(step), path))
    return sorted(found, key=lambda c: c.step)


def checkpoint_path(run_dir: Path, which: str) -> Path:
    """``best`` (by validation ROUGE, from ``make eval-checkpoints``) or a step number."""
    if which == "best":
        scores = run_dir / OUT_NAME / "scores.json"
        if not scores.exists():
            raise CheckpointError(
                f"{scores} not found: score the checkpoints first (make eval-checkpoints RECIPE=... RUN_DIR={run_dir})"
            )
        return Path(json.loads(scores.read_text())["best"]["path"])
    if not which.isdigit():
        raise CheckpointError(f"CHECKPOINT={which}: give 'best' or a step number")
    path = run_dir / "adapter" / f"checkpoint-{which}"
    if not holds_trained_weights(path):
        have = ", ".join(str(c.step) for c in find_checkpoints(run_dir)) or "none"
        raise CheckpointError(f"{path} holds no adapter or model; saved steps: {have}")
    return path

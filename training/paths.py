"""Where the project keeps things: the one home of every path default."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
STRATEGIES = RECIPES / "distributed"
RUNS = REPO / "runs"
CACHE = REPO / ".cache"
FINISHED = "TRAINED"  # the marker file a finished training run leaves in its run directory
MERGED_DIR = "merged"  # `make merge` writes the run's merged model here
MERGE_CHECK = "merge_check.json"  # written last by a merge: its presence marks a finished one


def models_dir() -> Path:
    """Offline models built by `make model`; ``MODELS_DIR`` points elsewhere."""
    return Path(os.environ.get("MODELS_DIR") or CACHE / "models")


def default_run_dir(recipe: str) -> Path:
    return RUNS / recipe

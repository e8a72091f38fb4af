"""Fixtures of the evaluation-side tests: a finished run as `make train` leaves it."""

import json
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import DEMO_DATA, REPO
from training.recipe import project_defaults

DATA_DEFAULTS, EVAL_DEFAULTS = project_defaults()["data"], project_defaults()["evaluation"]
TRAIN_PY = REPO / ".venv" / "train" / "bin" / "python"


def train_in_training_env(recipe: str, run_dir, *args: str) -> None:
    """A real run, as `make train RECIPE=<recipe>` makes it: scripts/train.py in .venv/train."""
    if not TRAIN_PY.exists():
        pytest.skip("the training environment .venv/train is missing: run `make env-train`")
    cmd = [str(TRAIN_PY), str(REPO / "scripts" / "train.py"), recipe, *args, "--run-dir", str(run_dir)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture
def tiny_run(tmp_path, tiny_llama, tiny_adapter):
    return write_tiny_run(tmp_path / "run", tiny_llama, tiny_adapter)


@pytest.fixture(scope="module")
def tiny_run_of_module(tmp_path_factory, tiny_llama, tiny_adapter):
    """tiny_run shared by a module's tests (one server for all of them)."""
    return write_tiny_run(tmp_path_factory.mktemp("module") / "run", tiny_llama, tiny_adapter)


def write_tiny_run(run_dir, tiny_llama, tiny_adapter):
    shutil.copytree(tiny_adapter, run_dir / "adapter")
    run = {
        "recipe": "tiny",
        "base_model": str(tiny_llama),
        "adapter": "lora",
        "overrides": [],
        "data": {**DATA_DEFAULTS, "location": str(DEMO_DATA)},
        "evaluation": {**EVAL_DEFAULTS, "limit": 6, "max_new_tokens": 12},
    }
    (run_dir / "run.yml").write_text(yaml.safe_dump(run))
    (run_dir / "config.yml").write_text(yaml.safe_dump({"sequence_len": 512, "lora_r": 8}))
    (run_dir / "TRAINED").write_text("ok\n")
    return run_dir


def texts_of(out_dir):
    """A checkpoint evaluation's generated texts, by system, in item order."""
    rows = [json.loads(line) for line in (out_dir / "predictions.jsonl").read_text().splitlines()]
    return {name: [r[name] for r in rows] for name in rows[0] if name != "id"}

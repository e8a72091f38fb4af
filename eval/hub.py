"""Publish a finished run to the Hugging Face Hub: the adapter (or the merged or fully
fine-tuned model) with its model card, and the evaluation's scores when there is one.

Through ``huggingface_hub`` (``create_repo`` + ``upload_folder``), with the token taken from
``HF_TOKEN`` in the environment only, and never printed. What goes up is what a user of the
model needs: weights, configs, tokenizer and card. Checkpoints, optimizer states, TensorBoard
logs and pickled trainer arguments stay here, and so do the dataset's texts (the report and
predictions hold dialogues and references under the dataset's licence).

    python scripts/push_to_hub.py smollm2-dialogsum --repo-id me/smollm2-dialogsum-lora   (make publish-hub)
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from training.merge import merged_model
from training.paths import FINISHED, default_run_dir

log = logging.getLogger("publish")
TOKEN_ENV = "HF_TOKEN"
LEFT_OUT = ["checkpoint-*", "checkpoint-*/**", "runs/**", "*.pt", "*.pth", "training_args.bin", "debug.log"]
EVAL_FILES = ("metrics.json",)  # scores only: report.md and predictions.jsonl quote the dataset


class PublishError(ValueError):
    """A run that cannot be published as asked: says why and what to do."""


def folder_to_publish(run_dir: Path, merged: bool) -> Path:
    """The adapter, or with ``merged`` the model `make merge` wrote; a full fine-tune's model."""
    if not (run_dir / FINISHED).exists():
        raise PublishError(f"{run_dir} holds no finished training run: run `make train` first")
    run = yaml.safe_load((run_dir / "run.yml").read_text())
    try:
        folder = merged_model(run_dir, run) if merged else run_dir / "adapter"
    except ValueError as err:
        raise PublishError(str(err)) from None
    if not folder.is_dir():
        raise PublishError(f"{folder} does not exist: run `make train RECIPE={run['recipe']}` first")
    if not (folder / "README.md").exists():
        raise PublishError(f"{folder} has no model card (README.md): run `make eval` to write one")
    return folder


def files_to_upload(folder: Path, eval_dir: Path) -> dict[str, Path]:
    """path in the repository -> local file: the folder minus LEFT_OUT, plus eval/<scores>."""
    from huggingface_hub.utils import filter_repo_objects

    local = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    chosen = {name: folder / name for name in filter_repo_objects(local, ignore_patterns=LEFT_OUT)}
    chosen |= {f"eval/{n}": eval_dir / n for n in EVAL_FILES if (eval_dir / n).exists()}
    return chosen


def push(run_dir: Path, repo_id: str, *, merged: bool = False, private: bool = True, api: Any = None) -> str:
    """Create (or reuse) the repository and upload one commit; return its URL."""
    from huggingface_hub import CommitOperationAdd, HfApi

    token = os.environ.get(TOKEN_ENV)
    if not token:
        raise PublishError(
            f"set {TOKEN_ENV} in the environment to a token with write access (never on the command line)"
        )
    folder = folder_to_publish(run_dir, merged)
    files = files_to_upload(folder, run_dir / "eval")
    api = api or HfApi()
    api.create_repo(repo_id, token=token, private=private, exist_ok=True, repo_type="model")
    commit = api.create_commit(
        repo_id,
        operations=[CommitOperationAdd(path_in_repo=k, path_or_fileobj=str(v)) for k, v in files.items()],
        commit_message=f"{run_dir.name}: {'merged model' if merged else folder.name}, model card and scores",
        token=token,
        repo_type="model",
    )
    log.info("%d files uploaded to %s", len(files), repo_id)
    return str(getattr(commit, "commit_url", commit))


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--repo-id", required=True, help="owner/name on the Hub")
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument(
        "--merged", action="store_true", help="the merged model (make merge) instead of the adapter"
    )
    parser.add_argument("--public", action="store_true", help="a public repository (default: private)")
    args = parser.parse_args(argv)
    run_dir = (args.run_dir or default_run_dir(args.recipe)).resolve()
    try:
        url = push(run_dir, args.repo_id, merged=args.merged, private=not args.public)
    except PublishError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"published {run_dir.name} to {url}")
    return 0

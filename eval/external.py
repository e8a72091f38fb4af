"""Evaluate an adapter or model trained elsewhere (a folder or a Hub id), the way
lm-evaluation-harness is used: ``make eval RECIPE=... ADAPTER=... [MODEL=...]``.

The recipe says what the run would have said: the data and its prompt format, the
evaluation settings, and the adapter kind (lora or qlora, which decides how it is merged).
This module writes that as a run directory of its own (``runs/external/<name>/``: ``run.yml``,
``config.yml``, ``adapter`` linking to the weights), so the evaluation, its resume, report and
checkpoint-free model card are exactly those of a run trained here. The card goes to the
evaluation folder: the weights' own folder is not ours to write in.

- ``ADAPTER`` alone: base model from the adapter's ``adapter_config.json``.
- ``ADAPTER`` and ``MODEL``: that adapter on that base.
- ``MODEL`` alone: a fully fine-tuned model, compared against the recipe's base model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from datasets_fmt import atomic
from eval.backends import has_cuda
from eval.recipe_block import check_evaluation_block
from training.checks import check_values
from training.paths import FINISHED, RUNS
from training.recipe import RecipeError, resolve


class ExternalError(ValueError):
    """Weights that cannot be evaluated as given: says which and what to pass instead."""


def local_folder(name: str, what: str) -> Path:
    """A folder as given, or a Hub repository downloaded into the Hub cache."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ExternalError(f"{what} '{name}' is neither a folder nor a Hub id (owner/name)")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(name))


def base_of(adapter: Path) -> str:
    config = adapter / "adapter_config.json"
    if not config.exists():
        raise ExternalError(
            f"{adapter} has no adapter_config.json: pass a PEFT adapter, or the model as MODEL="
        )
    base = json.loads(config.read_text()).get("base_model_name_or_path")
    if not base:
        raise ExternalError(f"{config} names no base_model_name_or_path: pass the base as MODEL=")
    return base


def external_run_dir(adapter: str | None, model: str | None) -> Path:
    """runs/external/<the weights' path or Hub id as one name>, never a hidden folder (a path
    such as .cache/models/M would otherwise start it with a dot)."""
    name = "+".join(
        re.sub(r"[^A-Za-z0-9._-]+", "_", x.strip("/")).lstrip("._") for x in (adapter, model) if x
    )
    return RUNS / "external" / name


def prepare_external_run(
    recipe: str,
    adapter: str | None,
    model: str | None,
    run_dir: Path | None = None,
    overrides: tuple[str, ...] = (),
) -> Path:
    """Write (or reuse) the run directory that describes these weights under ``recipe``."""
    if not adapter and not model:
        raise ExternalError("give ADAPTER=<folder or Hub id>, MODEL=<folder or Hub id>, or both")
    run_dir = (run_dir or external_run_dir(adapter, model)).resolve()
    adapter_dir = local_folder(adapter, "ADAPTER") if adapter else None
    model_dir = local_folder(model, "MODEL") if model else None
    full = adapter_dir is None  # MODEL alone: every weight trained, compared against the recipe's base
    base = None if full else str(model_dir) if model_dir else base_of(adapter_dir)
    chosen = [*overrides, *([f"base_model={base}"] if base else []), *(["adapter=null"] if full else [])]
    try:
        resolved = resolve(recipe, chosen)
        check_values(resolved, {"evaluation": check_evaluation_block})
    except RecipeError as err:
        raise ExternalError(str(err)) from None
    source = {"adapter": adapter, "model": model}
    run = {
        "recipe": resolved.name,
        "recipe_file": str(resolved.source),
        "overrides": chosen,
        "base_model": resolved.config["base_model"],
        "adapter": None if full else resolved.config.get("adapter"),
        **resolved.project,
        "hardware": "cuda" if has_cuda() else "cpu",
        "external": source,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    weights = run_dir / "adapter"
    if weights.is_symlink() or weights.exists():
        weights.unlink()
    weights.symlink_to(model_dir if full else adapter_dir, target_is_directory=True)
    atomic.write_yaml(run_dir / "config.yml", resolved.config)
    atomic.write_yaml(run_dir / "run.yml", run)
    atomic.write_text(run_dir / FINISHED, f"external: {json.dumps(source)}\n")
    return run_dir

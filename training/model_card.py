"""The model card (README.md with Hugging Face front matter) a finished run leaves beside its
adapter or model, so the folder can be published as it is; ``make eval`` adds its results
(eval/model_card.py).

Why not the card the trainer writes there: it names the machine's own paths as the base
model and the dataset (the run's ``data/train.jsonl``), which mean nothing on the Hub. The
metadata is built with ``huggingface_hub.ModelCardData``, the Hub's own schema.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from huggingface_hub import ModelCardData

from datasets_fmt import atomic
from datasets_fmt.sources import is_hub_id
from training.run_record import trained_every_weight

HUB_DATASETS = {
    "dialogsum": "knkarthick/dialogsum",
    "samsum": "Samsung/samsum",
    "dolly": "databricks/databricks-dolly-15k",
}


def dataset_name(data: dict) -> str:
    """A built-in corpus's hub id; your own data's hub id, or its file's name."""
    if data["corpus"] in HUB_DATASETS:
        return HUB_DATASETS[data["corpus"]]
    location = str(data.get("location"))
    return location if is_hub_id(location) else Path(location).name


def kind_of(run: dict) -> str:
    """lora, qlora or full."""
    return "full" if trained_every_weight(run) else run["adapter"]


def hub_base_model(run: dict) -> str | None:
    """The base as a Hub id; None for a local folder, which the Hub could not link."""
    base = str(run["base_model"])
    return None if Path(base).is_absolute() or base.startswith(".") or Path(base).exists() else base


def card_data(run: dict, **extra) -> ModelCardData:
    full = trained_every_weight(run)
    return ModelCardData(
        library_name="transformers" if full else "peft",
        base_model=hub_base_model(run),
        datasets=[dataset_name(run["data"])],
        license="other",
        tags=["axolotl", "full-fine-tune" if full else kind_of(run), "summarization", "dialogue"],
        **extra,
    )


def title(run: dict) -> str:
    base = hub_base_model(run) or f"{Path(run['base_model']).name} (a local copy)"
    return f"# {run['recipe']}: a {kind_of(run)} fine-tune of {base} for dialogue summarization"


def training_section(run: dict, config: dict, lora: dict | None = None) -> str:
    corpus = dataset_name(run["data"])
    records = run.get("data_check", {}).get("train", {}).get("records", "?")
    weights = (
        "Every weight trained (no adapter)"
        if trained_every_weight(run)
        else f"LoRA/quantization: {yaml.safe_dump(lora or lora_settings(config), default_flow_style=True).strip()}"
    )
    if run.get("base_mode"):  # a QLoRA adapter trained on the base's NF4 round trip held in bf16
        weights += f" ({run['base_mode']})"
    steps = config.get("max_steps") or f"{config.get('num_epochs')} epoch(s)"
    return f"""Trained with [Axolotl](https://github.com/axolotl-ai-cloud/axolotl) by the recipe `{run["recipe"]}`
(overrides: {run.get("overrides") or "none"}) on {corpus} ({records} records),
{run.get("train_seconds", "?")} s on {run.get("hardware")}. The licence of the training data applies.

## Training settings

{weights}; learning rate {config.get("learning_rate")},
sequence_len {config.get("sequence_len")}, micro batch {config.get("micro_batch_size")} x accumulation {config.get("gradient_accumulation_steps")},
optimizer {config.get("optimizer")}, steps {steps}.
"""


def lora_settings(config: dict) -> dict:
    keys = ("adapter", "lora_r", "lora_alpha", "lora_dropout", "lora_target_modules", "lora_target_linear")
    return {k: config[k] for k in keys if config.get(k) is not None}


def render(data: ModelCardData, body: str) -> str:
    return f"---\n{data.to_yaml()}\n---\n\n{body}"


def write_training_card(folder: Path, run: dict, config: dict) -> Path:
    """The card at the end of training: what was trained, how, and how to evaluate it."""
    body = f"""{title(run)}

{training_section(run, config)}
## Evaluation

Not evaluated yet: `make eval RECIPE={run["recipe"]}` scores it against its base and adds the results here.
"""
    return atomic.write_text(Path(folder) / "README.md", render(card_data(run), body))

"""The adapter's model card (README.md with Hugging Face front matter), written from the
run's record and its evaluation, so what is published is what was measured."""

from __future__ import annotations

from pathlib import Path

import yaml

from datasets_fmt import atomic
from datasets_fmt.sources import is_hub_id
from training.run_record import trained_every_weight

HUB_DATASETS = {
    "dialogsum": "knkarthick/dialogsum",
    "samsum": "Samsung/samsum",
    "dolly": "databricks/databricks-dolly-15k",
}


def describes(checkpoint: str, weights: str) -> str:
    """``weights``: adapter, or model for a full fine-tune."""
    if checkpoint == "final":
        return f"{weights} saved at the end of training"
    return f"{weights} saved {checkpoint}, chosen by validation ROUGE (make eval-checkpoints), not the final {weights}"


def dataset_name(data: dict) -> str:
    """A built-in corpus's hub id; your own data's hub id, or its file's name."""
    if data["corpus"] in HUB_DATASETS:
        return HUB_DATASETS[data["corpus"]]
    location = str(data.get("location"))
    return location if is_hub_id(location) else Path(location).name


def write_model_card(adapter_dir: Path, run: dict, config: dict, metrics: dict) -> Path:
    corpus = dataset_name(run["data"])
    scores, labels = metrics["scores"], metrics["labels"]
    results = [
        {
            "type": f"{name.lower()}-{agg}-of-references",
            "name": f"{name} ({agg} over references)",
            "value": round(scores[agg][key]["finetuned"]["mean"], 2),
        }
        for agg in ("best", "mean")
        for key, name in labels.items()
    ]
    full = trained_every_weight(run)
    kind = "full" if full else run["adapter"]  # lora, qlora or full
    front = {
        "library_name": "transformers" if full else "peft",
        "base_model": run["base_model"],
        "datasets": [corpus],
        "license": "other",
        "tags": [
            "axolotl",
            "full-fine-tune" if full else kind,
            "summarization",
            "dialogue",
        ],
        "model-index": [
            {
                "name": f"{Path(adapter_dir).parent.name}-{run['recipe']}",
                "results": [
                    {
                        "task": {"type": "summarization", "name": "Dialogue summarization"},
                        "dataset": {
                            "name": metrics["provenance"]["dataset"],
                            "type": corpus,
                            "split": run["evaluation"]["split"],
                        },
                        "metrics": results,
                    }
                ],
            }
        ],
    }
    gen = metrics["generation"]
    lora = metrics["provenance"]["lora"]
    weights = (
        f"LoRA/quantization: {yaml.safe_dump(lora, default_flow_style=True).strip()}"
        if not full
        else "Every weight trained (no adapter)"
    )
    rows = "\n".join(
        f"| {labels[k]} | {scores[a][k]['base']['mean']:.2f} | {scores[a][k]['finetuned']['mean']:.2f} | {a} |"
        for a in ("best", "mean")
        for k in metrics["keys"]
    )
    body = f"""
# {run["recipe"]}: a {kind} fine-tune of {run["base_model"]} for dialogue summarization

Trained with [Axolotl](https://github.com/axolotl-ai-cloud/axolotl) by the recipe `{run["recipe"]}`
(overrides: {run.get("overrides") or "none"}) on {corpus} ({run.get("data_check", {}).get("train", {}).get("records", "?")} records),
{run.get("train_seconds", "?")} s on {run.get("hardware")}. The licence of the training data applies.
This card describes the {describes(gen.get("checkpoint", "final"), "model" if full else "adapter")}.

## Evaluation ({metrics["n"]} items of {metrics["provenance"]["dataset"]})

| metric | base | fine-tuned | references |
|---|---|---|---|
{rows}

{metrics["scoring"]}.

## How to prompt it

Prompt format `{gen["prompt_format"]}` (datasets_fmt/prompts.py); an example prompt:

```
{gen["example_prompt"]}
```

Decoding: {gen["decoding"]}; stop token ids {gen["stop_token_ids"]}, max_new_tokens {gen["max_new_tokens"]}.

## Training settings

{weights}; learning rate {config.get("learning_rate")},
sequence_len {config.get("sequence_len")}, micro batch {config.get("micro_batch_size")} x accumulation {config.get("gradient_accumulation_steps")},
optimizer {config.get("optimizer")}, steps {config.get("max_steps") or str(config.get("num_epochs")) + " epoch(s)"}.

Libraries: {", ".join(f"{k} {v}" for k, v in metrics["provenance"]["libraries"].items())}.
"""
    text = "---\n" + yaml.safe_dump(front, sort_keys=False, allow_unicode=True) + "---\n" + body
    return atomic.write_text(Path(adapter_dir) / "README.md", text)

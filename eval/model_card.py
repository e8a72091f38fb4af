"""The adapter's model card (README.md with Hugging Face front matter), written from the
run's record and its evaluation, so what is published is what was measured."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import EvalResult

from datasets_fmt import atomic
from training.model_card import card_data, dataset_name, render, title, training_section
from training.run_record import trained_every_weight


def describes(checkpoint: str, weights: str) -> str:
    """``weights``: adapter, or model for a full fine-tune."""
    if checkpoint == "final":
        return f"{weights} saved at the end of training"
    return f"{weights} saved {checkpoint}, chosen by validation ROUGE (make eval-checkpoints), not the final {weights}"


def eval_results(run: dict, metrics: dict) -> list[EvalResult]:
    """The fine-tuned side's scores in the Hub's model-index schema."""
    return [
        EvalResult(
            task_type="summarization",
            task_name="Dialogue summarization",
            dataset_type=dataset_name(run["data"]),
            dataset_name=metrics["provenance"]["dataset"],
            dataset_split=run["evaluation"]["split"],
            metric_type=f"{name.lower()}-{agg}-of-references",
            metric_name=f"{name} ({agg} over references)",
            metric_value=round(metrics["scores"][agg][key]["finetuned"]["mean"], 2),
        )
        for agg in ("best", "mean")
        for key, name in metrics["labels"].items()
    ]


def write_model_card(adapter_dir: Path, run: dict, config: dict, metrics: dict) -> Path:
    """The training card with the evaluation's results added (replaces the one training wrote)."""
    scores, labels = metrics["scores"], metrics["labels"]
    full = trained_every_weight(run)
    data = card_data(
        run,
        model_name=f"{Path(adapter_dir).parent.name}-{run['recipe']}",
        eval_results=eval_results(run, metrics),
    )
    gen = metrics["generation"]
    rows = "\n".join(
        f"| {labels[k]} | {scores[a][k]['base']['mean']:.2f} | {scores[a][k]['finetuned']['mean']:.2f} | {a} |"
        for a in ("best", "mean")
        for k in metrics["keys"]
    )
    body = f"""{title(run)}

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

{training_section(run, config, metrics["provenance"]["lora"])}
Libraries: {", ".join(f"{k} {v}" for k, v in metrics["provenance"]["libraries"].items())}.
"""
    return atomic.write_text(Path(adapter_dir) / "README.md", render(data, body))

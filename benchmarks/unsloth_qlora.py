"""The training benchmark's Unsloth peer: Unsloth's documented QLoRA path for Llama-3-8B
(``FastLanguageModel`` in 4-bit, LoRA on every linear layer with dropout 0, its "unsloth"
gradient checkpointing, TRL's ``SFTTrainer`` with packing) on the recipe's rows, run in a
process of its own and timed by the same meter as the recipe (benchmarks/train_meter.py).

What is held equal to the recipe, so that the table compares engines and not settings: the
DialogSum rows tokenized by the ONE prompt definition (loss on the summary only), the
sequence length, the packed rows per optimizer step (micro-batch x accumulation), the LoRA
rank and alpha, the learning rate and its schedule (warmup counted as Axolotl counts it),
the seed. Unsloth is pinned in requirements/peers.txt and imported from its own folder
(``make env-peers``): its dependency pins would move torch.
Without a GPU, Unsloth trains on the CPU in 16-bit (no 4-bit), which is what the tests run.

    python -m benchmarks.unsloth_qlora --model DIR --data-dir DIR --steps 12 --out FILE.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from benchmarks.plain_qlora_loop import shuffled_encodings
from benchmarks.train_throughput import RECIPE, resolved_recipe

ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def tokenized_rows(tokenizer: Any, data_dir: Path, sequence_len: int, rows: int, seed: int) -> list[dict]:
    """``rows`` DialogSum training dialogues in the benchmark's seeded order, encoded as the
    recipe encodes them; ``completion_mask`` marks the tokens TRL puts the loss on (the summary
    and its end-of-turn token), the labels the recipe trains on."""
    from datasets_fmt.prompts import IGNORE_INDEX, get_format
    from training.recipe import resolve

    fmt = get_format(resolve(RECIPE, []).project["data"]["format"], tokenizer)
    return [
        {"input_ids": enc.input_ids, "completion_mask": [int(x != IGNORE_INDEX) for x in enc.labels]}
        for enc in shuffled_encodings(fmt, data_dir, sequence_len, seed, rows)
    ]


def axolotl_warmup_steps(recipe: dict, steps: int) -> int:
    """The warmup Axolotl gives the recipe in a run of ``steps`` optimizer steps, so that both
    learning-rate schedules match step for step (TRL would round a ratio up: 1 step of 10 at
    0.03). Axolotl's rule (``_configure_warmup_and_logging``): ``warmup_steps`` as given, else
    ``int(ratio x steps)`` with a ratio of 0.03 when none is set (at most 100); 1 becomes 2."""
    if recipe.get("warmup_steps") is not None:
        warmup = recipe["warmup_steps"]
    elif recipe.get("warmup_ratio") is not None:
        warmup = max(int(recipe["warmup_ratio"] * steps), 0)
    else:
        warmup = min(int(0.03 * steps), 100)
    return 2 if warmup == 1 else warmup


def peer_settings(recipe: dict, steps: int) -> dict:
    """What the Unsloth run takes from the recipe (the rest is Unsloth's documented path)."""
    return {
        "sequence_len": recipe["sequence_len"],
        "micro_batch_size": recipe["micro_batch_size"],
        "gradient_accumulation_steps": recipe["gradient_accumulation_steps"],
        "lora_r": recipe["lora_r"],
        "lora_alpha": recipe["lora_alpha"],
        "learning_rate": recipe["learning_rate"],
        "lr_scheduler": recipe["lr_scheduler"],
        "warmup_steps": axolotl_warmup_steps(recipe, steps),
        "seed": recipe["seed"],
    }


def run(model_dir: Path, data_dir: Path, steps: int, load_in_4bit: bool) -> None:
    """Train ``steps`` optimizer steps; the meter writes $BENCH_JSON."""
    import unsloth  # noqa: F401 - first, as Unsloth's docs require: it patches transformers and TRL
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer
    from unsloth import FastLanguageModel

    from benchmarks.train_meter import BenchMeter

    s = peer_settings(resolved_recipe(), steps)
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(model_dir), max_seq_length=s["sequence_len"], dtype=None, load_in_4bit=load_in_4bit
    )
    model = FastLanguageModel.get_peft_model(
        model,
        r=s["lora_r"],
        lora_alpha=s["lora_alpha"],
        lora_dropout=0,
        target_modules=ALL_LINEAR,
        bias="none",
        use_gradient_checkpointing="unsloth",
        random_state=s["seed"],
    )
    per_step = s["micro_batch_size"] * s["gradient_accumulation_steps"]
    # packed rows hold ~7 dialogues of 2,048 tokens: draw enough for every step and spare
    rows = tokenized_rows(tokenizer, data_dir, s["sequence_len"], per_step * (steps + 2) * 16, s["seed"])
    trainer = SFTTrainer(
        model=model,
        processing_class=tokenizer,
        train_dataset=Dataset.from_list(rows),
        args=SFTConfig(
            output_dir=os.environ.get("BENCH_OUTPUT_DIR", "unsloth-out"),
            per_device_train_batch_size=s["micro_batch_size"],
            gradient_accumulation_steps=s["gradient_accumulation_steps"],
            max_steps=steps,
            learning_rate=s["learning_rate"],
            warmup_steps=s["warmup_steps"],
            lr_scheduler_type=s["lr_scheduler"],
            optim="adamw_8bit",
            max_length=s["sequence_len"],
            packing=True,
            completion_only_loss=True,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=s["seed"],
        ),
    )
    BenchMeter().post_trainer_create({"lora_r": s["lora_r"]}, trainer)
    trainer.train()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, required=True, help="folder holding dialogsum/train.jsonl")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--out", type=Path, required=True, help="the meter's JSON record")
    a = p.parse_args()
    os.environ["BENCH_JSON"] = str(a.out)
    import torch

    run(a.model, a.data_dir, a.steps, load_in_4bit=torch.cuda.is_available())
    return 0


if __name__ == "__main__":
    sys.exit(main())

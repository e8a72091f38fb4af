"""The benchmark's reference point: a hand-written transformers + PEFT + bitsandbytes QLoRA
loop, timed per optimizer step: 4-bit NF4 (double quant, bf16 compute),
``prepare_model_for_kbit_training``, gradient checkpointing, paged AdamW 8-bit, lr 2e-4. Two
shapes: the notes' (LoRA r8/alpha32 on q,k,v,o, 4 random dialogues a step padded to the
longest) and ``packed``, the recipe's (its LoRA shape and packed rows, dialogues kept apart
by a block-diagonal mask: benchmarks/plain_packing.py)."""

from __future__ import annotations

import random
import time
from pathlib import Path

BASELINE_LORA = {
    "r": 8,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": ["q_proj", "o_proj", "k_proj", "v_proj"],
}
BASELINE_BATCH = 4  # dialogues a step, padded to the longest


def recipe_lora(cfg: dict) -> dict:
    """The recipe's adapter shape (every linear layer), for the packed baseline and the table."""
    if not cfg.get("lora_target_linear"):
        raise ValueError("the packed baseline copies an all-linear adapter (lora_target_linear: true)")
    return {
        "r": cfg["lora_r"],
        "lora_alpha": cfg["lora_alpha"],
        "lora_dropout": cfg["lora_dropout"],
        "target_modules": "all-linear",
    }


def lora_label(r: int, alpha: int, target: str = "all linear") -> str:
    """How the benchmark's table names an adapter's shape."""
    return f"r{r} / alpha {alpha}, {target}"


def shuffled_encodings(fmt, data_dir: Path, width: int, seed: int, count: int | None = None) -> list:
    """DialogSum's training dialogues in one seeded order (its first ``count``), encoded for
    training by the prompt format: what every run of the benchmark that packs or batches
    itself trains on."""
    from datasets_fmt.sources import load_examples

    examples = load_examples("dialogsum", "train", str(data_dir)).examples
    order = random.Random(seed).sample(range(len(examples)), len(examples))[:count]
    return [fmt.encode_train(examples[i], width) for i in order]


MicroBatch = tuple[dict, int]  # model inputs, real (non-pad) tokens


def padded_steps(encodings: list, steps: int, pad_id: int) -> list[list[MicroBatch]]:
    """The notes' loop: BASELINE_BATCH dialogues a step, right-padded to the longest."""
    import torch

    out = []
    for step in range(steps):
        encs = encodings[step * BASELINE_BATCH : (step + 1) * BASELINE_BATCH]
        width = max(len(e.input_ids) for e in encs)
        ids = torch.full((len(encs), width), pad_id, dtype=torch.long)
        labels = torch.full((len(encs), width), -100, dtype=torch.long)
        mask = torch.zeros((len(encs), width), dtype=torch.long)
        for row, e in enumerate(encs):
            n = len(e.input_ids)
            ids[row, :n] = torch.tensor(e.input_ids)
            labels[row, :n] = torch.tensor(e.labels)
            mask[row, :n] = 1
        out.append([({"input_ids": ids, "labels": labels, "attention_mask": mask}, int(mask.sum()))])
    return out


def packed_steps(encodings: list, steps: int, pad_id: int, cfg: dict) -> list[list[MicroBatch]]:
    """The recipe's shape: micro_batch_size packed rows of sequence_len, accumulated
    gradient_accumulation_steps times a step; dialogues isolated by a block-diagonal mask."""
    from benchmarks.plain_packing import collate_packed, pack_first_fit

    width, micro, accum = cfg["sequence_len"], cfg["micro_batch_size"], cfg["gradient_accumulation_steps"]
    rows = pack_first_fit(encodings, width)
    need = steps * micro * accum
    if len(rows) < need + 1:  # the last row is rarely full
        raise ValueError(
            f"{len(encodings)} dialogues fill {len(rows)} rows; {need} are needed: use more data"
        )
    steps_rows = [
        [rows[(s * accum + m) * micro : (s * accum + m + 1) * micro] for m in range(accum)]
        for s in range(steps)
    ]
    return [
        [(collate_packed(mb, width, pad_id), sum(len(e.input_ids) for row in mb for e in row)) for mb in step]
        for step in steps_rows
    ]


def run_baseline(model_dir: Path, data_dir: Path, steps: int, packed: bool, seed: int, recipe: dict) -> dict:
    """A hand-written transformers + PEFT + bitsandbytes loop, timed per optimizer step:
    the notes' shape (LoRA r8 on q/k/v/o, padded dialogues) or, ``packed``, the recipe's
    (its LoRA shape, its packed rows and tokens a step)."""
    import bitsandbytes as bnb
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from datasets_fmt.prompts import get_format

    tok = AutoTokenizer.from_pretrained(model_dir)
    fmt = get_format("chat", tok)
    if packed:
        encodings = shuffled_encodings(fmt, data_dir, recipe["sequence_len"], seed)
        batches = packed_steps(encodings, steps, tok.pad_token_id, recipe)
    else:
        encodings = shuffled_encodings(fmt, data_dir, 2048, seed, steps * BASELINE_BATCH)
        batches = padded_steps(encodings, steps, tok.pad_token_id)
    lora = recipe_lora(recipe) if packed else BASELINE_LORA
    started = time.time()
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_use_double_quant=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
        ),
        attn_implementation="sdpa",
        device_map={"": 0},
    )
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    model = get_peft_model(model, LoraConfig(**lora, bias="none", task_type="CAUSAL_LM"))
    load_s = time.time() - started
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = bnb.optim.PagedAdamW8bit(trainable, lr=2e-4, weight_decay=0.001)
    model.train()
    torch.cuda.reset_peak_memory_stats()
    records = []
    for micro_batches in batches:
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        losses = []
        for mb, _ in micro_batches:
            out = model(**{k: v.cuda() for k, v in mb.items()})
            (out.loss / len(micro_batches)).backward()
            losses.append(out.loss.detach())
        torch.nn.utils.clip_grad_norm_(trainable, 0.3)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss = float(torch.stack(losses).mean())
        torch.cuda.synchronize()
        records.append(
            {
                "seconds": time.perf_counter() - t0,
                "real": sum(real for _, real in micro_batches),
                "positions": sum(mb["input_ids"].numel() for mb, _ in micro_batches),
                "loss": loss,
            }
        )
    target = "all linear" if packed else "q,k,v,o"
    shape = "packed rows as the recipe" if packed else f"{BASELINE_BATCH} dialogues padded to the longest"
    return {
        "name": "baseline_packed" if packed else "baseline",
        "what": f"transformers+PEFT+bnb, LoRA r{lora['r']} {target}, {shape}, GC",
        "lora": lora_label(lora["r"], lora["lora_alpha"], target),
        "len_tokenizer": len(tok),
        "pad_token_id": tok.pad_token_id,
        "trainable_params": sum(p.numel() for p in trainable),
        "load_seconds": round(load_s, 1),
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
        "steps": records,
    }

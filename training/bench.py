"""Training-throughput benchmark: a plain QLoRA training loop against the llama3-dialogsum recipe.

Why: the recipe claims to train much faster than the plain transformers + PEFT +
bitsandbytes loop such a fine-tune usually starts from, without changing what is learned. This measures both on the same GPU, in one run, with the same tokenizer,
prompt format (``datasets_fmt``) and data, and reports real (non-pad) tokens/s, padding
share, step time, peak GPU memory and the share of the bf16 matmul ceiling.

- ``baseline``: plain transformers + PEFT + bitsandbytes: 4-bit NF4 (double quant, bf16
  compute), ``prepare_model_for_kbit_training``, gradient checkpointing, paged AdamW 8-bit,
  lr 2e-4. A hand-written loop, timed per optimizer step, in two shapes: the notes' (LoRA
  r8/alpha32 on q,k,v,o, 4 random dialogues a step padded to the longest) and, with
  ``--packed``, the recipe's (its LoRA shape and packed rows, dialogues kept apart by a
  block-diagonal mask: training/plain_packing.py), so that the table separates what packing
  and batching give from what the recipe's kernels give.
- ``recipe``: ``scripts/train.py llama3-dialogsum`` (Axolotl) with extra overrides. The
  plugin :class:`BenchMeter` (loaded by Axolotl through ``plugins:``) counts the non-pad
  tokens of every packed micro-batch, times each optimizer step, records the loss curve and,
  once, checks that packed samples do not see each other (per-sample loss packed vs. alone).
- ``all``: both baselines, then each recipe variant (a subprocess each), then ``table``.

On a GPU machine: ``make bench-train`` (a random-weight Llama-3-8B, see
training/random_model.py), or directly:
    python scripts/bench_train.py all --model .cache/models/llama3-8b-random --data-dir DIR \
        --out runs/bench-train --variant default: --variant "gc:gradient_checkpointing=true"
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from training.paths import RUNS

PEAK_BF16_FLOPS = 790e12  # dense bf16 matmul, measured on an H100 80GB HBM3
PARAMS = 8.03e9  # Llama-3-8B
FLOPS_PER_TOKEN = 4 * PARAMS  # LoRA: forward 2N + input-gradient backward 2N (no frozen weight grads)
RECIPE = "llama3-dialogsum"
NO_EVAL = ["data.validation_split=null", "eval_steps=null"]

try:  # only inside Axolotl's process does the plugin base matter
    from axolotl.integrations.base import BasePlugin
except Exception:  # noqa: BLE001 - axolotl absent or broken: the plugin is not used then
    BasePlugin = object  # type: ignore[misc,assignment]


# -- shared ------------------------------------------------------------------------------
def summarize(steps: list[dict], warmup: int) -> dict:
    """Steady-state figures from per-step records {seconds, real, positions, loss}."""
    steady = steps[warmup:]
    secs = sum(s["seconds"] for s in steady)
    real = sum(s["real"] for s in steady)
    pos = sum(s["positions"] for s in steady)
    tps = real / secs if secs else 0.0
    return {
        "measured_steps": len(steady),
        "step_seconds": secs / len(steady) if steady else 0.0,
        "real_tokens_per_step": real / len(steady) if steady else 0.0,
        "real_tokens_per_s": tps,
        "positions_per_s": pos / secs if secs else 0.0,
        "padding_share": 1 - real / pos if pos else 0.0,
        "ceiling_share": tps * FLOPS_PER_TOKEN / PEAK_BF16_FLOPS,
    }


def fix_pad_token(model_dir: Path, pad: str) -> None:
    """Name the recipe's pad token in the model folder's tokenizer_config.json: a pad token
    missing from the vocabulary is added at load time (len 128257) and resizes embeddings."""
    cfg_file = model_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    if cfg.get("pad_token") != pad:
        cfg["pad_token"] = pad
        cfg_file.write_text(json.dumps(cfg, indent=2))
    # A tokenizer saved after the old pad token was added carries it as id 128256: drop
    # added tokens beyond the model's vocabulary.
    vocab = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    tok_file = model_dir / "tokenizer.json"
    tok = json.loads(tok_file.read_text())
    kept = [t for t in tok["added_tokens"] if t["id"] < vocab]
    if len(kept) != len(tok["added_tokens"]):
        tok["added_tokens"] = kept
        tok_file.write_text(json.dumps(tok, ensure_ascii=False))


def resolved_recipe(overrides: list[str] = ()) -> dict:
    from training.recipe import resolve

    return resolve(RECIPE, list(overrides)).config


def recipe_pad_token() -> str:
    return resolved_recipe()["special_tokens"]["pad_token"]


def plugins_override() -> str:
    """The meter joins the recipe's own plugins (Liger): a `plugins=` override replaces the list."""
    plugins = [*(resolved_recipe().get("plugins") or []), "training.bench.BenchMeter"]
    return f"plugins=[{','.join(plugins)}]"


# -- baseline: the plain loop --------------------------------------------------------------
BASELINE_LORA = {
    "r": 8,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": ["q_proj", "o_proj", "k_proj", "v_proj"],
}
BASELINE_BATCH = 4  # dialogues a step, padded to the longest


def recipe_lora(overrides: list[str] = ()) -> dict:
    """The recipe's adapter shape (every linear layer), for the packed baseline and the table."""
    cfg = resolved_recipe(overrides)
    if not cfg.get("lora_target_linear"):
        raise ValueError(
            f"{RECIPE}: the packed baseline copies an all-linear adapter (lora_target_linear: true)"
        )
    return {
        "r": cfg["lora_r"],
        "lora_alpha": cfg["lora_alpha"],
        "lora_dropout": cfg["lora_dropout"],
        "target_modules": "all-linear",
    }


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


def packed_steps(encodings: list, steps: int, pad_id: int) -> list[list[MicroBatch]]:
    """The recipe's shape: micro_batch_size packed rows of sequence_len, accumulated
    gradient_accumulation_steps times a step; dialogues isolated by a block-diagonal mask."""
    from training.plain_packing import collate_packed, pack_first_fit

    cfg = resolved_recipe()
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


def run_baseline(model_dir: Path, data_dir: Path, steps: int, warmup: int, packed: bool, seed: int) -> dict:
    """A hand-written transformers + PEFT + bitsandbytes loop, timed per optimizer step:
    the notes' shape (LoRA r8 on q/k/v/o, padded dialogues) or, ``packed``, the recipe's
    (its LoRA shape, its packed rows and tokens a step)."""
    import bitsandbytes as bnb
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

    from datasets_fmt.prompts import get_format
    from datasets_fmt.sources import load_examples

    tok = AutoTokenizer.from_pretrained(model_dir)
    fmt = get_format("chat", tok)
    examples = load_examples("dialogsum", "train", str(data_dir)).examples
    order = random.Random(seed).sample(range(len(examples)), len(examples))
    if packed:
        width = resolved_recipe()["sequence_len"]
        batches = packed_steps([fmt.encode_train(examples[i], width) for i in order], steps, tok.pad_token_id)
    else:
        encodings = [fmt.encode_train(examples[i], 2048) for i in order[: steps * BASELINE_BATCH]]
        batches = padded_steps(encodings, steps, tok.pad_token_id)
    lora = recipe_lora() if packed else BASELINE_LORA
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
        "lora": f"r{lora['r']} / alpha {lora['lora_alpha']}, {target}",
        "len_tokenizer": len(tok),
        "pad_token_id": tok.pad_token_id,
        "trainable_params": sum(p.numel() for p in trainable),
        "load_seconds": round(load_s, 1),
        "peak_allocated_gib": torch.cuda.max_memory_allocated() / 2**30,
        "peak_reserved_gib": torch.cuda.max_memory_reserved() / 2**30,
        "steps": records,
        **summarize(records, warmup),
    }


# -- recipe: Axolotl plugin ------------------------------------------------------------------
class BenchMeter(BasePlugin):  # type: ignore[misc,valid-type]
    """Axolotl plugin (``plugins: [training.bench.BenchMeter]``): per
    optimizer step, the wall time (CUDA-synchronized), the non-pad tokens and positions of
    its micro-batches and the loss; once, the packing-isolation check. Writes $BENCH_JSON."""

    def post_trainer_create(self, cfg: Any, trainer: Any) -> None:
        import torch
        from transformers import TrainerCallback

        tok = trainer.processing_class
        pad_id = tok.pad_token_id
        acc = {"real": torch.zeros((), dtype=torch.long), "pos": 0, "docs": 0, "calls": 0}
        record: dict[str, Any] = {
            "len_tokenizer": len(tok),
            "pad_token_id": pad_id,
            "embedding_rows": trainer.model.get_input_embeddings().weight.shape[0],
            "steps": [],
        }
        inner = trainer.training_step

        def training_step(model, inputs, *args, **kwargs):
            ids = inputs["input_ids"]
            if "attention_mask" in inputs:
                real = (inputs["attention_mask"] != 0).sum()
            else:
                real = (ids != pad_id).sum()
            if acc["calls"] == 0:
                record["first_batch_keys"] = sorted(inputs.keys())
                record["first_batch_nonpad_ids"] = int((ids != pad_id).sum())
                record["first_batch_real"] = int(real)
                if os.environ.get("BENCH_CHECK_PACKING", "1") == "1" and "position_ids" in inputs:
                    record["packing_check"] = packing_check(model, inputs, pad_id)
                    if torch.cuda.is_available():  # the check's eval passes are not training
                        torch.cuda.reset_peak_memory_stats()
            acc["real"] = acc["real"] + real.cpu()
            acc["pos"] += ids.numel()
            if "position_ids" in inputs:
                acc["docs"] += int((inputs["position_ids"] == 0).sum())
            acc["calls"] += 1
            return inner(model, inputs, *args, **kwargs)

        trainer.training_step = training_step
        state = {"t": None}
        cuda = torch.cuda.is_available()
        sync = torch.cuda.synchronize if cuda else (lambda: None)

        class Meter(TrainerCallback):
            def on_train_begin(self, args, st, control, **kw):
                sync()
                state["t"] = time.perf_counter()

            def on_step_end(self, args, st, control, **kw):
                sync()
                now = time.perf_counter()
                # Axolotl resets the peak counters when it logs: read them per step.
                peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
                record["peak_allocated_gib"] = max(record.get("peak_allocated_gib", 0.0), peak)
                record["steps"].append(
                    {
                        "seconds": now - state["t"],
                        "real": int(acc["real"]),
                        "peak_gib": peak,
                        "positions": acc["pos"],
                        "rows_docs": acc["docs"],
                        "micro_batches": acc["calls"],
                    }
                )
                state["t"] = now
                Path(os.environ["BENCH_JSON"] + ".partial").write_text(json.dumps(record))
                acc.update(real=torch.zeros((), dtype=torch.long), pos=0, docs=0, calls=0)

            def on_log(self, args, st, control, logs=None, **kw):
                if logs and "loss" in logs and record["steps"]:
                    record["steps"][-1]["loss"] = logs["loss"]
                    for key in (
                        "tokens/total",
                        "tokens/trainable",
                        "grad_norm",
                        "memory/max_allocated (GiB)",
                    ):
                        if key in logs:
                            record["steps"][-1][key] = logs[key]

            def on_train_end(self, args, st, control, **kw):
                record["peak_reserved_gib_at_end"] = torch.cuda.max_memory_reserved() / 2**30 if cuda else 0.0
                Path(os.environ["BENCH_JSON"]).write_text(json.dumps(record, indent=1))

        trainer.add_callback(Meter())


def packing_check(model: Any, inputs: dict, pad_id: int) -> dict:
    """Per-sample mean loss of the first packed row's samples: (a) in the packed row as
    Axolotl feeds it (position_ids resetting, no attention mask), (b) each sample alone,
    (c) the packed row with one running position range (samples see earlier ones: what a
    leak looks like). (a) = (b) within bf16 noise means packing keeps samples separate."""
    import torch
    import torch.nn.functional as F

    dev = next(model.parameters()).device
    ids, pos, labels = (inputs[k][:1].to(dev) for k in ("input_ids", "position_ids", "labels"))
    starts = (pos[0] == 0).nonzero().flatten().tolist() + [ids.shape[1]]
    spans = [(a, b) for a, b in zip(starts, starts[1:], strict=False) if (labels[0, a:b] != -100).any()]

    def per_sample(
        logits: torch.Tensor, offset_spans: list[tuple[int, int]], lab: torch.Tensor
    ) -> list[float]:
        out = []
        for a, b in offset_spans:
            lg, lb = logits[0, a : b - 1].float(), lab[0, a + 1 : b]
            out.append(F.cross_entropy(lg, lb, ignore_index=-100).item())
        return out

    was_training = model.training
    model.eval()
    with torch.no_grad():
        packed = per_sample(model(input_ids=ids, position_ids=pos, use_cache=False).logits, spans, labels)
        alone = []
        for a, b in spans:
            n = b - a
            lg = model(
                input_ids=ids[:, a:b], position_ids=torch.arange(n, device=ids.device)[None], use_cache=False
            ).logits
            alone += per_sample(lg, [(0, n)], labels[:, a:b])
        run = torch.arange(ids.shape[1], device=ids.device)[None]
        leaky = per_sample(model(input_ids=ids, position_ids=run, use_cache=False).logits, spans, labels)
    model.train(was_training)
    return {
        "samples": len(spans),
        "max_abs_diff_packed_vs_alone": max(abs(p - a) for p, a in zip(packed, alone, strict=True)),
        "max_abs_diff_leaky_vs_alone": max(abs(p - a) for p, a in zip(leaky[1:], alone[1:], strict=True))
        if len(spans) > 1
        else None,
        "loss_packed": packed,
        "loss_alone": alone,
        "loss_leaky": leaky,
    }


def run_recipe(
    name: str,
    overrides: list[str],
    model_dir: Path,
    data_dir: Path,
    steps: int,
    warmup: int,
    out: Path,
    timeout: int,
) -> dict:
    json_file = out / f"recipe_{name}.json"
    run_dir = out / "runs" / name
    args = [
        RECIPE,
        f"base_model={model_dir}",
        f"max_steps={steps}",
        "logging_steps=1",
        "save_steps=1000",
        *NO_EVAL,
        *overrides,
        "--data-dir",
        str(data_dir),
        "--overwrite",
        "--run-dir",
        str(run_dir),
    ]
    args.insert(1, plugins_override())
    cmd = [sys.executable, "-m", "training.runner", *args]
    env = {**os.environ, "BENCH_JSON": str(json_file)}
    log = out / f"recipe_{name}.log"
    started = time.time()
    with log.open("w") as fh:
        fh.write(" ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:  # end train.py and its Axolotl child (own session)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = "timeout"
    part = Path(str(json_file) + ".partial")
    partial = json.loads(part.read_text()) if part.exists() else None
    part.unlink(missing_ok=True)
    lora = recipe_lora(overrides)
    result: dict[str, Any] = {
        "name": name,
        "lora": f"r{lora['r']} / alpha {lora['lora_alpha']}, all linear",
        "overrides": overrides,
        "rc": rc,
        "wall_seconds": round(time.time() - started, 1),
    }
    if json_file.exists():
        result.update(json.loads(json_file.read_text()))
    elif partial:  # killed before on_train_end: the steps recorded so far
        result.update(partial)
    if result.get("steps"):
        result.update(summarize(result["steps"], warmup))
    json_file.write_text(json.dumps(result, indent=1))
    return result


# -- report ----------------------------------------------------------------------------------
def table(results: list[dict], warmup: int) -> str:
    for r in results:  # a record the plugin wrote after its run's timeout has no summary yet
        if r.get("steps") and "real_tokens_per_s" not in r:
            r.update(summarize(r["steps"], warmup))
    for r in results:
        r.setdefault("name", "default")
    base = next((r for r in results if r["name"] == "baseline" and "real_tokens_per_s" in r), None)
    ref = next((r for r in results if r["name"] == "default" and "steps" in r), None)
    lines = [
        "| run | LoRA | real tok/s | x baseline | padding | step s | real tok/step | peak alloc GiB | ceiling | max |dloss| vs default |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        if not r.get("real_tokens_per_s"):
            lines.append(f"| {r['name']} | {r.get('lora', '')} | failed (rc {r.get('rc')}) | | | | | | | |")
            continue
        ratio = r["real_tokens_per_s"] / base["real_tokens_per_s"] if base else float("nan")
        dloss = "-"
        if ref and r["name"] != "default" and not r["name"].startswith("baseline"):
            pairs = [(a.get("loss"), b.get("loss")) for a, b in zip(r["steps"], ref["steps"], strict=False)]
            diffs = [abs(a - b) for a, b in pairs if a is not None and b is not None]
            dloss = f"{max(diffs):.4f} ({len(diffs)} steps)" if diffs else "-"
        lines.append(
            f"| {r['name']} | {r.get('lora', '')} | {r['real_tokens_per_s']:,.0f} | {ratio:.2f} | {r['padding_share']:.1%} | "
            f"{r['step_seconds']:.3f} | {r['real_tokens_per_step']:,.0f} | {r['peak_allocated_gib']:.2f} | "
            f"{r['ceiling_share']:.1%} | {dloss} |"
        )
    return "\n".join(lines)


def run_baseline_process(a: argparse.Namespace, packed: bool) -> tuple[str, int | str]:
    """The baseline in its own process, so that its GPU memory is gone before the recipe runs."""
    name = "baseline_packed" if packed else "baseline"
    cmd = [
        sys.executable,
        "-m",
        "training.bench",
        "baseline",
        "--model",
        str(a.model),
        "--data-dir",
        str(a.data_dir),
    ]
    cmd += ["--out", str(a.out), "--baseline-steps", str(a.baseline_steps), "--warmup", str(a.warmup)]
    with (a.out / f"{name}.log").open("w") as fh:
        try:
            return name, subprocess.run(
                [*cmd, *(["--packed"] if packed else [])], stdout=fh, stderr=subprocess.STDOUT, timeout=300
            ).returncode
        except subprocess.TimeoutExpired:
            return name, "timeout"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("mode", choices=["all", "baseline", "table"])
    p.add_argument("--model", type=Path, required=True, help="a model folder (e.g. a random-weight 8B)")
    p.add_argument("--data-dir", type=Path, required=True, help="folder holding dialogsum/train.jsonl")
    p.add_argument("--out", type=Path, default=RUNS / "bench-train")
    p.add_argument("--steps", type=int, default=12, help="optimizer steps per recipe run")
    p.add_argument("--baseline-steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2, help="steps left out of the steady state")
    p.add_argument("--timeout", type=int, default=170, help="seconds per recipe run")
    p.add_argument("--skip-baseline", action="store_true")
    p.add_argument("--packed", action="store_true", help="baseline: the recipe's LoRA shape and packed rows")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:key=value key=value ... (recipe overrides); 'default:' for none",
    )
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.mode == "baseline":
        res = run_baseline(a.model, a.data_dir, a.baseline_steps, a.warmup, a.packed, 0)
        (a.out / f"{res['name']}.json").write_text(json.dumps(res, indent=1))
        return 0
    if a.mode == "all":
        fix_pad_token(a.model, recipe_pad_token())
        if not a.skip_baseline:
            for packed in (False, True):
                name, rc = run_baseline_process(a, packed)
                print(f"{name}: rc={rc}", flush=True)
        for spec in a.variant:
            name, _, rest = spec.partition(":")
            r = run_recipe(name, rest.split(), a.model, a.data_dir, a.steps, a.warmup, a.out, a.timeout)
            print(
                f"{name}: rc={r['rc']} {r.get('real_tokens_per_s', 0):,.0f} real tok/s "
                f"peak {r.get('peak_allocated_gib', 0):.2f} GiB wall {r['wall_seconds']} s",
                flush=True,
            )
    files = [*a.out.glob("baseline*.json"), *a.out.glob("recipe_*.json")]
    results = [json.loads(f.read_text()) for f in sorted(files, key=os.path.getmtime)]
    print(table(results, a.warmup))
    return 0


if __name__ == "__main__":
    sys.exit(main())

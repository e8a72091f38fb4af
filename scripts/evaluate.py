"""Evaluate a trained run: base vs fine-tuned on the recipe's evaluation split.

    python scripts/evaluate.py smollm2-dialogsum [--limit N] [--backend vllm|hf] [--adapter-mode lora|merged]

Prompts come from the same code as training (datasets_fmt.prompts). Generation is greedy,
batched (vLLM by default), stops on the model's own stop tokens, and is saved as it goes:
an interrupted evaluation resumes without regenerating. Writes into ``runs/<recipe>/eval/``:
``predictions.jsonl``, ``metrics.json``, ``report.md`` and ``report.html``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from merge import merge_adapter  # noqa: E402

from datasets_fmt import atomic  # noqa: E402
from datasets_fmt.prompts import get_format  # noqa: E402
from datasets_fmt.sources import load_examples  # noqa: E402
from eval import generate as gen  # noqa: E402
from eval.model_card import write_model_card  # noqa: E402
from eval.predictions import PartialPredictions  # noqa: E402
from eval.report import write_report  # noqa: E402
from eval.rouge import summarize  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
log = logging.getLogger("evaluate")
CHUNK = 64  # items generated between two saves


def run_system(
    name: str,
    partial: PartialPredictions,
    generator,
    adapter: str | None,
    prompts,
    examples,
    max_new: int,
    stop: list[int],
) -> dict:
    """Generate what ``partial`` does not hold yet for one system; return its throughput."""
    todo = [i for i, ex in enumerate(examples) if ex.id not in partial.done]
    log.info(
        "%s: generating %d of %d (%d already done)", name, len(todo), len(examples), len(examples) - len(todo)
    )
    started, tokens = time.time(), 0
    for batch in gen.chunks(todo, CHUNK):
        outs = generator.generate([prompts[i].input_ids for i in batch], max_new, stop, adapter=adapter)
        tokens += sum(o.output_tokens for o in outs)
        partial.append({"id": examples[i].id, **o.to_json()} for i, o in zip(batch, outs, strict=True))
    seconds = time.time() - started
    return {
        "items": len(todo),
        "seconds": round(seconds, 2),
        "prompts_per_s": round(len(todo) / seconds, 3),
        "output_tokens_per_s": round(tokens / seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate base vs fine-tuned for a trained run.")
    parser.add_argument("recipe")
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--limit", type=int, help="evaluate the first N items of the split")
    parser.add_argument("--split")
    parser.add_argument("--backend", choices=["vllm", "hf"])
    parser.add_argument("--adapter-mode", choices=["auto", "lora", "merged"])
    parser.add_argument("--data-dir", help="override where the evaluation data lives")
    parser.add_argument("--out-dir", type=Path, help="default: <run-dir>/eval")
    args = parser.parse_args(argv)
    if not log.handlers:  # vLLM reconfigures the root logger; keep ours visible
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False

    run_dir = (args.run_dir or REPO / "runs" / args.recipe).resolve()
    if not (run_dir / "TRAINED").exists():
        log.error("%s holds no finished training run: run `make train RECIPE=%s` first", run_dir, args.recipe)
        return 2
    run = yaml.safe_load((run_dir / "run.yml").read_text())
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    settings = {
        **run["evaluation"],
        **{
            k: v
            for k, v in (
                ("limit", args.limit),
                ("split", args.split),
                ("backend", args.backend),
                ("adapter_mode", args.adapter_mode),
            )
            if v is not None
        },
    }
    data = run["data"]
    location = str(Path(args.data_dir).resolve()) if args.data_dir else data["location"]
    base_model, adapter = run["base_model"], run_dir / "adapter"

    from transformers import AutoConfig, AutoTokenizer

    loaded = load_examples(data["corpus"], settings["split"], location)
    examples = loaded.examples[: settings["limit"]] if settings["limit"] else loaded.examples
    tokenizer = AutoTokenizer.from_pretrained(base_model)
    fmt = get_format(data["format"], tokenizer, data["instruction"])
    ref_lengths = [len(fmt.text_ids(r)) + len(fmt.stop_token_ids) for ex in examples for r in ex.references]
    max_new = settings["max_new_tokens"] or gen.max_new_tokens_for(ref_lengths)
    model_max = getattr(AutoConfig.from_pretrained(base_model), "max_position_embeddings", None) or 4096
    max_model_len = min(model_max, config["sequence_len"] + max_new)
    prompts = [fmt.encode_prompt(ex, max_model_len - max_new) for ex in examples]
    stop = gen.stop_token_ids(base_model, fmt.stop_token_ids)

    cuda = gen.has_cuda()
    backend = "hf" if fmt.is_seq2seq else settings["backend"]  # vLLM serves decoder-only models
    # vLLM on CPU serves a merged model ~10x faster than base + LoRA; elsewhere keep them apart
    auto_mode = "merged" if backend == "vllm" and not cuda else "lora"
    mode = settings["adapter_mode"] if settings["adapter_mode"] != "auto" else auto_mode
    out_dir = (args.out_dir or run_dir / "eval").resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    fingerprint = {
        "base_model": base_model,
        "adapter_mode": mode,
        "backend": backend,
        "max_new_tokens": max_new,
        "format": data["format"],
        "data": loaded.source,
        "adapter_trained": (run_dir / "TRAINED").read_text().strip(),
    }
    settings_file = out_dir / "settings.json"
    if settings_file.exists() and json.loads(settings_file.read_text()) != fingerprint:
        log.info("generation settings changed since the last evaluation in %s: starting over", out_dir)
        for stale in out_dir.glob("*.partial.jsonl"):
            stale.unlink()
    atomic.write_json(settings_file, fingerprint)
    partials = {name: PartialPredictions(out_dir / f"{name}.partial.jsonl") for name in ("base", "finetuned")}
    log.info(
        "%d items of %s; max_new_tokens=%d; backend=%s; adapter=%s; stop ids %s",
        len(examples),
        loaded.source,
        max_new,
        backend,
        mode,
        stop,
    )

    merged = run_dir / "merged"
    if mode == "merged" and not (merged / "merge_check.json").exists():
        log.info(
            "merging the adapter into %s (CPU: vLLM serves a merged model ~10x faster than LoRA)", merged
        )
        merge_adapter(base_model, adapter, merged, qlora=run.get("adapter") == "qlora")

    throughput, engine_seconds = {}, {}
    plan = [
        ("base", base_model, None),
        (
            "finetuned",
            str(merged) if mode == "merged" else base_model,
            None if mode == "merged" else str(adapter),
        ),
    ]
    shared = None
    for name, model_path, lora in plan:
        if all(ex.id in partials[name].done for ex in examples):
            log.info("%s: all %d items already generated (resumed)", name, len(examples))
            continue
        started = time.time()
        if backend == "vllm":
            if shared is None or mode == "merged":
                if shared is not None:
                    shared.close()
                shared = gen.VLLMGenerator(
                    model_path, max_model_len, lora_rank=gen.adapter_rank(adapter) if mode == "lora" else None
                )
            generator = shared
        else:
            generator = gen.HFGenerator(model_path, adapter=lora, seq2seq=fmt.is_seq2seq)
        engine_seconds[name] = round(time.time() - started, 1)
        throughput[name] = run_system(
            name,
            partials[name],
            generator,
            lora if backend == "vllm" else None,
            prompts,
            examples,
            max_new,
            stop,
        )
        if backend == "hf":
            generator.close()
    if shared is not None:
        shared.close()

    base_done, ft_done = partials["base"].done, partials["finetuned"].done
    rows = [
        {
            "id": ex.id,
            "dialogue": ex.source,
            "references": list(ex.references),
            "prompt_tokens": p.prompt_len,
            "truncated_tokens": p.truncated_tokens,
            "base": {k: v for k, v in base_done[ex.id].items() if k != "id"},
            "finetuned": {k: v for k, v in ft_done[ex.id].items() if k != "id"},
        }
        for ex, p in zip(examples, prompts, strict=True)
    ]
    atomic.write_jsonl(out_dir / "predictions.jsonl", rows)
    result = summarize(
        {"base": [r["base"]["text"] for r in rows], "finetuned": [r["finetuned"]["text"] for r in rows]},
        [r["references"] for r in rows],
    )
    generation = {
        "backend": backend,
        "adapter_mode": mode,
        "max_new_tokens": max_new,
        "max_model_len": max_model_len,
        "stop_token_ids": stop,
        "greedy": True,
        "engine_start_seconds": engine_seconds,
        "throughput": throughput,
        "prompt_format": data["format"],
        "example_prompt": fmt.prompt_text(examples[0]),
    }
    paths, metrics = write_report(out_dir, run_dir, run, config, rows, result, generation, loaded.source)
    paths.append(write_model_card(adapter, run, config, metrics))
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

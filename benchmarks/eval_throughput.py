"""Benchmark the evaluation backends on the same prompts: vLLM vs transformers `generate`.

    python -m benchmarks.eval_throughput --data-dir DIR [--limit 500] [--model DIR]     (make bench-eval)

Greedy, same prompts (datasets_fmt.prompts), same dtype (bf16 unless --dtype), same
max_new_tokens, same stop tokens. Prints prompts/s and output tokens/s per backend
(engine/model start excluded, reported apart) and the vLLM/HF ratio of each.
"""

from __future__ import annotations

import argparse
import time

from transformers import AutoTokenizer

from datasets_fmt.prompts import get_format
from datasets_fmt.sources import load_examples
from eval.backends import EngineSettings, get_backend, stop_token_ids
from eval.hardware import hardware
from eval.pipeline import seeded_subset
from training.paths import models_dir


def timed(name: str, model: str, settings: EngineSettings, prompts, max_new, stop) -> dict:
    started = time.perf_counter()
    backend = get_backend(name)(model, settings)
    ready = time.perf_counter()
    outs = backend.generate(prompts, max_new, stop)
    done = time.perf_counter()
    backend.close()
    tokens = sum(o.output_tokens for o in outs)
    return {
        "start_s": ready - started,
        "gen_s": done - ready,
        "prompts_per_s": len(prompts) / (done - ready),
        "tokens_per_s": tokens / (done - ready),
        "stopped": sum(o.stopped for o in outs) / len(outs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--model", default=str(models_dir() / "SmolLM2-135M-Instruct"))
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--hf-batch-size", type=int, default=16)
    parser.add_argument("--backends", default="vllm,hf")
    parser.add_argument("--dtype", default="bfloat16", help="the same for every backend")
    args = parser.parse_args()

    fmt = get_format("chat", AutoTokenizer.from_pretrained(args.model))
    examples = seeded_subset(load_examples("dialogsum", "test", args.data_dir).examples, args.limit)
    max_len = 2048
    prompts = [fmt.encode_prompt(ex, max_len - args.max_new_tokens).input_ids for ex in examples]
    stop = stop_token_ids(args.model, fmt.stop_token_ids)
    settings = EngineSettings(max_model_len=max_len, batch_size=args.hf_batch_size, dtype=args.dtype)
    results = {
        name: timed(name, args.model, settings, prompts, args.max_new_tokens, stop)
        for name in args.backends.split(",")
    }
    print(
        f"\n{len(prompts)} DialogSum test prompts, {args.model}, {args.dtype}, greedy, max_new_tokens={args.max_new_tokens}, {hardware()}"
    )
    print("| backend | start s | generate s | prompts/s | output tokens/s | stopped |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['start_s']:.1f} | {r['gen_s']:.1f} | {r['prompts_per_s']:.2f} | {r['tokens_per_s']:.1f} | {r['stopped']:.0%} |"
        )
    if {"vllm", "hf"} <= set(results):
        vllm, hf = results["vllm"], results["hf"]
        print(
            f"vLLM / HF: {vllm['prompts_per_s'] / hf['prompts_per_s']:.2f}x prompts/s, "
            f"{vllm['tokens_per_s'] / hf['tokens_per_s']:.2f}x output tokens/s"
        )


if __name__ == "__main__":  # vLLM starts its engine in a child process that re-imports this module
    main()

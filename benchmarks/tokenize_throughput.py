"""Benchmark: tokenize whole training sets through the project's prompt format.

    python -m benchmarks.tokenize_throughput --data-dir DIR [--model DIR]     (make bench-tokenize)

Prints records/s, tokens/s and peak memory (RSS) per corpus, so a regression in loading,
validation or prompt building shows up as a number.
"""

from __future__ import annotations

import argparse
import resource
import time

from transformers import AutoTokenizer

from datasets_fmt.prompts import fit_report, get_format
from datasets_fmt.sources import load_examples
from training.paths import models_dir


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--model", default=str(models_dir() / "SmolLM2-135M-Instruct"))
    parser.add_argument("--format", default="chat")
    parser.add_argument("--sequence-len", type=int, default=1024)
    args = parser.parse_args()
    fmt = get_format(args.format, AutoTokenizer.from_pretrained(args.model))
    print(
        "| corpus | records | load s | tokenize s | records/s | tokens/s | truncated | dropped | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for corpus in ("dialogsum", "samsum"):
        started = time.perf_counter()
        loaded = load_examples(corpus, "train", args.data_dir)
        loaded_at = time.perf_counter()
        fit = fit_report(fmt, loaded.examples, args.sequence_len)
        done = time.perf_counter()
        n = len(loaded.examples)
        print(
            f"| {corpus} | {n} | {loaded_at - started:.2f} | {done - loaded_at:.2f} | {n / (done - started):.0f} | "
            f"{fit.tokens / (done - loaded_at):.0f} | {fit.truncated} | {fit.too_long} | {peak_rss_mib():.0f} |"
        )


if __name__ == "__main__":
    main()

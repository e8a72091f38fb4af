"""The served summarizer under load: vLLM's own load generator (`vllm bench serve`) against the
server `make serve` starts, for `base` and `finetuned`, at several concurrency levels.

    python -m benchmarks.serve_load RECIPE --data-dir DIR [--split test] [--run-dir DIR] [--concurrency 1,8,32,128]
        [--num-prompts N] [--output-len 256] [--url http://127.0.0.1:8000] [--merged] [--out FILE]   (make bench-serve)

Prompts: DialogSum test dialogues (or --split's) through the run's prompt format (datasets_fmt.prompts), the
token ids `make summarize` sends, written out as text for vLLM's `custom` dataset (which takes
text only) and sent as they are (no chat template on top, no second BOS); the server's tokens
for that text can differ from the ids by a token where the format joins its pieces. Greedy,
the format's stop tokens, at most --output-len new tokens (a model that stops early writes
fewer). Each level sends
--num-prompts requests (default: 4 per concurrent slot, at least 32) with at most that many in
flight. After each level it waits for the server's load gauges (requests running and waiting,
KV-cache use) to fall back to zero and reports how long that took: a slot left taken is a
leak, and fails the run like an error. The check assumes the benchmark is the server's only
client. Without --url it starts the run's server on a free localhost port and stops it after;
the API key, if any, comes from VLLM_API_KEY. Writes one Markdown table (and the figures as
JSON beside it) to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import yaml

from datasets_fmt import atomic
from datasets_fmt.sources import load_examples
from eval.api_key import api_key, auth_headers
from eval.backends import has_cuda
from eval.hardware import hardware
from eval.serve import BASE_NAME, add_merged_argument, context_length, free_port, running_server
from eval.summarize import ADAPTER_NAME, MAX_NEW_TOKENS, ServerError, prompt_format, wait_for_server
from training.paths import default_run_dir
from training.run_record import trained_every_weight

GPU_CONCURRENCY = (1, 8, 32, 128)
CPU_CONCURRENCY = (1, 4, 16)
MIN_PROMPTS = 32
# The server tokenizes the prompt text whole, the format tokenizes its pieces apart (instruction,
# dialogue): the counts can differ by a token at each joint. Prompts are cut this much shorter.
RETOKENIZE_SLACK = 8
COLUMNS = {  # table header -> (vLLM's result key, format)
    "requests/s": ("request_throughput", "{:.2f}"),
    "output tokens/s": ("output_throughput", "{:.1f}"),
    "mean output tokens": ("mean_output_tokens", "{:.1f}"),
    "TTFT p50 ms": ("p50_ttft_ms", "{:.0f}"),
    "TTFT p99 ms": ("p99_ttft_ms", "{:.0f}"),
    "end-to-end p50 ms": ("p50_e2el_ms", "{:.0f}"),
    "end-to-end p99 ms": ("p99_e2el_ms", "{:.0f}"),
    "errors": ("failed", "{}"),
}
# the table's last column: this module's own check after each level
TABLE_COLUMNS = {**COLUMNS, "slots free after s": ("slots_free_after_s", "{}")}
# what a request holds while it runs or waits: all back to zero once every answer is in
LOAD_GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:kv_cache_usage_perc")
RELEASE_WAIT_S = 30
STILL_TAKEN = "still taken"


def write_prompts(
    run: dict, data_dir: str, context: int, output_len: int, path: Path, split: str = "test"
) -> tuple[str, int, list[int]]:
    """The DialogSum ``split`` prompts as vLLM's custom dataset (JSON lines of ``prompt``): each
    the text of the ids `make summarize` sends, cut as it cuts them (:data:`RETOKENIZE_SLACK`
    shorter). Returns where they came from, how many there are, and the format's stop ids."""
    fmt, stop = prompt_format(run)
    loaded = load_examples("dialogsum", split, data_dir)
    texts = [
        fmt.tokenizer.decode(
            fmt.encode_prompt(ex, context - output_len - RETOKENIZE_SLACK).input_ids,
            skip_special_tokens=False,
        )
        for ex in loaded.examples
    ]
    atomic.write_jsonl(path, ({"prompt": text} for text in texts))
    return loaded.source, len(texts), stop


def bench_level(url: str, model: str, run: dict, dataset: Path, prompts: int, concurrency: int,
                output_len: int, stop: list[int]) -> dict:  # fmt: skip
    """One `vllm bench serve` run: ``prompts`` requests, at most ``concurrency`` in flight."""
    from vllm.benchmarks.serve import add_cli_args, main

    parser = argparse.ArgumentParser()
    add_cli_args(parser)
    args = parser.parse_args(
        [
            "--backend", "openai", "--base-url", url, "--endpoint", "/v1/completions",
            "--model", model, "--tokenizer", run["base_model"],
            "--dataset-name", "custom", "--dataset-path", str(dataset), "--skip-chat-template",
            "--disable-shuffle", "--num-prompts", str(prompts), "--custom-output-len", str(output_len),
            "--max-concurrency", str(concurrency), "--temperature", "0",
            "--extra-body", json.dumps({"stop_token_ids": stop, "add_special_tokens": False}),
            "--percentile-metrics", "ttft,e2el", "--metric-percentiles", "50,99", "--disable-tqdm",
            "--save-detailed",  # keeps the per-request errors in the result (no file is saved)
        ]
    )  # fmt: skip
    try:
        result = main(args)
    except ValueError as err:  # vLLM's own check: its first request failed
        raise ValueError(f"{model} at concurrency {concurrency}: {err}") from None
    result["mean_output_tokens"] = result["total_output_tokens"] / max(1, result["completed"])
    return {
        "model": model,
        "concurrency": concurrency,
        "prompts": prompts,
        **{key: result[key] for key, _ in COLUMNS.values()},
        "error_messages": sorted({e for e in result["errors"] if e}),
    }


def metric_values(url: str, names: Sequence[str]) -> dict[str, list[float]]:
    """Each named counter or gauge of the server's Prometheus ``/metrics``: one value per label set."""
    req = urllib.request.Request(f"{url}/metrics", headers=auth_headers())
    with urllib.request.urlopen(req, timeout=30) as response:
        lines = response.read().decode().splitlines()
    return {
        name: [float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name + "{")]
        for name in names
    }


def load_gauges(url: str) -> dict[str, float]:
    """The server's :data:`LOAD_GAUGES`, each summed over its labels (a missing one reads as
    taken: it cannot be shown free)."""
    found = metric_values(url, LOAD_GAUGES)
    return {name: sum(values) if values else float("inf") for name, values in found.items()}


def seconds_until_free(url: str, wait_s: float = RELEASE_WAIT_S, poll_s: float = 0.2) -> float | None:
    """How long after a level every load gauge was back at zero; None if one still was not
    after ``wait_s`` (a leaked slot)."""
    started = time.time()
    while any(load_gauges(url).values()):
        if time.time() - started >= wait_s:
            return None
        time.sleep(poll_s)
    return round(time.time() - started, 1)


def bench_and_check(url: str, model: str, run: dict, dataset: Path, prompts: int, concurrency: int,
                    output_len: int, stop: list[int]) -> dict:  # fmt: skip
    """A level, then the check that it left no slot taken."""
    row = bench_level(url, model, run, dataset, prompts, concurrency, output_len, stop)
    free = seconds_until_free(url)
    row["slots_free_after_s"] = STILL_TAKEN if free is None else free
    return row


def table(rows: list[dict]) -> str:
    lines = [
        "| model | concurrency | prompts | " + " | ".join(TABLE_COLUMNS) + " |",
        "|---|---|---|" + "---|" * len(TABLE_COLUMNS),
    ]
    for row in rows:
        cells = [fmt.format(row[key]) for key, fmt in TABLE_COLUMNS.values()]
        lines.append(
            f"| {row['model']} | {row['concurrency']} | {row['prompts']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def write_report(
    out: Path, what: str, module: str, argv: list[str] | None, table_text: str, rows: list[dict]
) -> None:
    """``what`` and the command that ran as a header over the table, to ``out``; the rows as
    JSON beside it; the same on the screen."""
    command = shlex.join(
        [Path(sys.executable).name, "-m", module, *(argv if argv is not None else sys.argv[1:])]
    )
    header = f"{what}\nCommand: `{command}`\n\n"
    atomic.write_text(out, header + table_text)
    atomic.write_json(out.with_suffix(".json"), rows)
    print(f"\n{header}{table_text}\nwrote {out}")


@contextmanager
def server_at(url: str | None, run_dir: Path, log: Path, merged: bool) -> Iterator[str]:
    """The server at ``url`` once it answers, else one started for the run (and stopped after)."""
    if url:
        wait_for_server(url.rstrip("/"), ADAPTER_NAME, wait_s=120)
        yield url.rstrip("/")
        return
    with running_server(run_dir, free_port(), log, merged=merged) as (started, _):
        yield started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--data-dir", required=True, help="a folder holding dialogsum/<split>.jsonl")
    parser.add_argument(
        "--split",
        default="test",
        help="the dialogues sent (train: 12,460, for loads past the test split's 500)",
    )
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument(
        "--concurrency", help=f"default {GPU_CONCURRENCY} on a GPU, {CPU_CONCURRENCY} on a CPU"
    )
    parser.add_argument(
        "--num-prompts", type=int, help=f"per level (default: 4 x concurrency, at least {MIN_PROMPTS})"
    )
    parser.add_argument("--output-len", type=int, default=MAX_NEW_TOKENS, help="max new tokens per request")
    parser.add_argument(
        "--models", help=f"default: {BASE_NAME},{ADAPTER_NAME} ({ADAPTER_NAME} for a full fine-tune)"
    )
    parser.add_argument("--url", help="a running `make serve` server (default: start one)")
    add_merged_argument(parser)
    parser.add_argument("--out", type=Path, help="default: <run dir>/serve-bench.md")
    args = parser.parse_args(argv)
    run_dir = (args.run_dir or default_run_dir(args.recipe)).resolve()
    run = yaml.safe_load((run_dir / "run.yml").read_text())
    out = args.out or run_dir / "serve-bench.md"
    models = args.models.split(",") if args.models else [ADAPTER_NAME]
    if not args.models and not (args.merged or trained_every_weight(run)):
        models.insert(0, BASE_NAME)
    levels = [int(c) for c in args.concurrency.split(",")] if args.concurrency else (
        GPU_CONCURRENCY if has_cuda() else CPU_CONCURRENCY
    )  # fmt: skip
    # vLLM's load generator sends OPENAI_API_KEY: the served model's key, and never another one
    os.environ.pop("OPENAI_API_KEY", None)
    if key := api_key():
        os.environ["OPENAI_API_KEY"] = key

    dataset = out.with_suffix(".prompts.jsonl")
    source, available, stop = write_prompts(
        run, args.data_dir, context_length(run_dir), args.output_len, dataset, args.split
    )
    try:
        with server_at(args.url, run_dir, out.with_suffix(".server.log"), args.merged) as url:
            rows = [
                bench_and_check(url, model, run, dataset, min(available, args.num_prompts or max(MIN_PROMPTS, 4 * c)),
                            c, args.output_len, stop)
                for model in models
                for c in levels
            ]  # fmt: skip
    except (ServerError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    what = (
        f"`vllm bench serve` on {run_dir.name} ({run['base_model']}), {date.today()}, {hardware()}; "
        f"prompts from {source}, greedy, at most {args.output_len} new tokens."
    )
    write_report(out, what, "benchmarks.serve_load", argv, table(rows), rows)
    return 0 if not any(r["failed"] or r["slots_free_after_s"] == STILL_TAKEN for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

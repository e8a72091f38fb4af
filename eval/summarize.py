"""Summarize a file of dialogues with a served model (``make summarize RECIPE=... FILE=...``).

    python scripts/summarize.py smollm2-dialogsum dialogues.jsonl [--out summaries.jsonl] [--url http://127.0.0.1:8000]

Input: JSON lines, each ``{"id": ..., "dialogue": "..."}`` (``id`` optional). Prompts are
built by :mod:`datasets_fmt.prompts`, the same code that built the training data, and sent
as token ids to the server ``make serve`` started; output: one ``{"id", "summary",
"stopped"}`` line per input line, written atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from datasets_fmt import atomic
from datasets_fmt.prompts import get_format
from datasets_fmt.readers import read_records
from datasets_fmt.records import DataError, Example
from eval.backends import chunks, stop_token_ids
from training.paths import default_run_dir

log = logging.getLogger("summarize")
MAX_NEW_TOKENS = 256  # room for a summary; `make serve` sizes the context with it too
ADAPTER_NAME = "finetuned"


class ServerError(RuntimeError):
    """No usable server at the URL: says where it looked and how to start one."""


def read_dialogues(path: Path) -> list[Example]:
    """The input records, each with a non-empty string ``dialogue``; errors name file and line."""
    if not path.is_file():
        raise DataError(
            str(path), None, None, 'no such file: give a JSON-lines file of {"id", "dialogue"} records'
        )
    examples, seen = [], set()
    for label, raw in read_records(path):
        dialogue = raw.get("dialogue")
        if not isinstance(dialogue, str) or not dialogue.strip():
            raise DataError(str(path), label, "dialogue", "missing, empty or not a string")
        ex_id = str(raw.get("id", label))
        if ex_id in seen:
            raise DataError(str(path), label, "id", f"duplicate id '{ex_id}'")
        seen.add(ex_id)
        examples.append(Example(ex_id, dialogue.replace("\r\n", "\n").strip(), ""))
    if not examples:
        raise DataError(str(path), None, None, "no dialogues in the file")
    return examples


def request(url: str, payload: dict | None = None, timeout: float = 600) -> dict:
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for_server(base_url: str, model: str, wait_s: float) -> int:
    """Wait until the server lists ``model``; return its context length (max_model_len)."""
    deadline = time.time() + wait_s
    last = "no answer"
    while True:
        try:
            models = {m["id"]: m for m in request(f"{base_url}/v1/models", timeout=5)["data"]}
            if model in models:
                # a LoRA module reports no context length of its own: its base's applies
                return int(
                    models[model].get("max_model_len")
                    or max(m.get("max_model_len") or 0 for m in models.values())
                )
            last = f"it serves {', '.join(models)}, not '{model}'"
        except (urllib.error.URLError, OSError, ValueError, KeyError) as err:
            last = str(getattr(err, "reason", err))
        if time.time() >= deadline:
            raise ServerError(
                f"no server for '{model}' at {base_url} after {wait_s:.0f} s ({last}): start one with `make serve RECIPE=...`"
            )
        time.sleep(1)


def summarize(
    run_dir: Path, dialogues: Path, out: Path, base_url: str, *, max_new_tokens: int = MAX_NEW_TOKENS,
    truncate: bool = False, wait_s: float = 120,
) -> Path:  # fmt: skip
    from transformers import AutoTokenizer

    run = yaml.safe_load((run_dir / "run.yml").read_text())
    data = run["data"]
    fmt = get_format(data["format"], AutoTokenizer.from_pretrained(run["base_model"]), data["instruction"])
    examples = read_dialogues(dialogues)
    context = wait_for_server(base_url, ADAPTER_NAME, wait_s)
    budget = context - max_new_tokens
    prompts = []
    for line, ex in enumerate(examples, start=1):
        full = fmt.encode_prompt(ex)
        if len(full.input_ids) > budget and not truncate:
            raise DataError(
                str(dialogues), f"record {line} (id {ex.id})", "dialogue",
                f"the prompt is {len(full.input_ids)} tokens; the server's context of {context} leaves {budget} "
                f"after {max_new_tokens} for the summary: shorten it, or pass --truncate to cut the dialogue",
            )  # fmt: skip
        prompts.append(
            fmt.encode_prompt(ex, budget).input_ids if len(full.input_ids) > budget else full.input_ids
        )
    stop = stop_token_ids(run["base_model"], fmt.stop_token_ids)
    rows = []
    for batch in chunks(list(range(len(examples))), 64):
        payload = {
            "model": ADAPTER_NAME,
            "prompt": [prompts[i] for i in batch],
            "max_tokens": max_new_tokens,
            "temperature": 0.0,
            "stop_token_ids": stop,
            "skip_special_tokens": True,
        }
        choices = sorted(request(f"{base_url}/v1/completions", payload)["choices"], key=lambda c: c["index"])
        for i, choice in zip(batch, choices, strict=True):
            rows.append(
                {
                    "id": examples[i].id,
                    "summary": choice["text"].strip(),
                    "stopped": choice["finish_reason"] == "stop",
                }
            )
        log.info("%d of %d summarized", len(rows), len(examples))
    return atomic.write_jsonl(out, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Summarize dialogues with the model `make serve` serves.")
    parser.add_argument("recipe")
    parser.add_argument("file", type=Path, help='JSON lines of {"id", "dialogue"}')
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--out", type=Path, help="default: <file>.summaries.jsonl")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS)
    parser.add_argument(
        "--truncate", action="store_true", help="cut dialogues that do not fit instead of stopping"
    )
    parser.add_argument("--wait", type=float, default=120, help="seconds to wait for the server")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    run_dir = (args.run_dir or default_run_dir(args.recipe)).resolve()
    out = args.out or args.file.with_suffix(".summaries.jsonl")
    try:
        written = summarize(
            run_dir,
            args.file,
            out,
            args.url.rstrip("/"),
            max_new_tokens=args.max_new_tokens,
            truncate=args.truncate,
            wait_s=args.wait,
        )
    except (DataError, ServerError, FileNotFoundError) as err:
        log.error("%s", err)
        return 2
    print(f"wrote {written}")
    return 0

"""Summarize a file of dialogues with a served model (``make summarize RECIPE=... FILE=...``).

    python scripts/summarize.py smollm2-dialogsum dialogues.jsonl [--out summaries.jsonl] [--url http://127.0.0.1:8000]

Input: JSON lines, each ``{"id": ..., "dialogue": "..."}`` (``id`` optional). Prompts are
built by :mod:`datasets_fmt.prompts`, the same code that built the training data, and sent
as token ids to the server ``make serve`` started, with the API key from ``VLLM_API_KEY``
when set; output: one ``{"id", "summary", "stopped"}`` line per input line, written
atomically at the end. Each answered batch is first appended to ``<out>.partial.jsonl``: a
run stopped halfway (server gone, Ctrl-C) keeps them, and running it again asks only for the
rest. Plain ``urllib`` rather than the ``openai`` client: two endpoints, and what the resume
and the one-line errors read is the raw HTTP status and vLLM's error body, without the
client's own retries in between.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import yaml

from datasets_fmt import atomic
from datasets_fmt.prompts import PromptFormat, get_format
from datasets_fmt.readers import read_records
from datasets_fmt.records import DataError, Example
from eval.api_key import API_KEY_ENV, auth_headers
from eval.backends import chunks, stop_token_ids
from eval.predictions import PartialPredictions
from training.paths import FINISHED, default_run_dir

log = logging.getLogger("summarize")
MAX_NEW_TOKENS = 256  # room for a summary; `make serve` sizes the context with it too
ADAPTER_NAME = "finetuned"
BATCH_SIZE = 64  # prompts per request; also what a stopped run loses at most


class ServerError(RuntimeError):
    """No usable server at the URL, or it failed: says where, and what to do."""


def refused_key(base_url: str) -> ServerError:
    return ServerError(
        f"the server at {base_url} refused the API key (401): set {API_KEY_ENV} to the key it was started with"
    )


def server_message(err: urllib.error.HTTPError) -> str:
    """The error message of an OpenAI-style error body, else the raw body."""
    body = err.read().decode("utf-8", "replace")
    try:
        error = json.loads(body)["error"]
        return error["message"] if isinstance(error, dict) else str(error)
    except (ValueError, KeyError, TypeError):
        return body.strip() or str(err.reason)


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
    headers = {"Content-Type": "application/json", **auth_headers()}
    req = urllib.request.Request(url, data=data, headers=headers)
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
        except urllib.error.HTTPError as err:
            if err.code == 401:
                raise refused_key(base_url) from None
            last = f"HTTP {err.code}: {server_message(err)}"
        except (urllib.error.URLError, OSError, ValueError, KeyError) as err:
            last = str(getattr(err, "reason", err))
        if time.time() >= deadline:
            raise ServerError(
                f"no server for '{model}' at {base_url} after {wait_s:.0f} s ({last}): start one with `make serve RECIPE=...`"
            )
        time.sleep(1)


class Refused(ValueError):
    """The server refused a request's content (a 4xx other than 401)."""


def complete(base_url: str, payload: dict) -> list[dict]:
    """The choices of one completions request, in prompt order: :class:`Refused` when the
    server refuses something in it, :class:`ServerError` when the server is unusable."""
    try:
        response = request(f"{base_url}/v1/completions", payload)
    except urllib.error.HTTPError as err:
        if err.code == 401:
            raise refused_key(base_url) from None
        if 400 <= err.code < 500:
            raise Refused(f"HTTP {err.code}: {server_message(err)}") from None
        raise ServerError(
            f"the server at {base_url} failed: HTTP {err.code}: {server_message(err)}"
        ) from None
    except (urllib.error.URLError, OSError) as err:
        raise ServerError(f"lost the server at {base_url} ({getattr(err, 'reason', err)})") from None
    choices = sorted(response["choices"], key=lambda c: c["index"])
    if any(c["finish_reason"] == "abort" for c in choices):
        # vLLM's answer (200, empty text) to a request that comes while it drains after SIGTERM
        raise ServerError(f"the server at {base_url} aborted the request (it is shutting down, or failed)")
    return choices


def prompt_format(run: dict) -> tuple[PromptFormat, list[int]]:
    """The run's prompt format (the one that built its training data) and its stop ids."""
    from transformers import AutoTokenizer

    data = run["data"]
    fmt = get_format(data["format"], AutoTokenizer.from_pretrained(run["base_model"]), data["instruction"])
    return fmt, stop_token_ids(run["base_model"], fmt.stop_token_ids)


def request_key(run_dir: Path, prompt: Sequence[int], max_new_tokens: int, stop: Sequence[int]) -> str:
    """What a summary depends on: a logged one is reused only while this matches (the same
    trained run, prompt and generation settings)."""
    trained = (run_dir / FINISHED).stat().st_mtime_ns
    what = [str(run_dir), trained, ADAPTER_NAME, list(prompt), max_new_tokens, sorted(stop)]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]


def encode_prompts(
    fmt: PromptFormat, examples: list[Example], dialogues: Path, context: int, max_new_tokens: int,
    truncate: bool,
) -> list[list[int]]:  # fmt: skip
    """Each dialogue's prompt ids, leaving ``max_new_tokens`` of the server's ``context``: one
    that does not fit is an error naming its record, or (``truncate``) has its dialogue cut as
    the evaluator does."""
    budget = context - max_new_tokens
    prompts = []
    for line, ex in enumerate(examples, start=1):
        full = fmt.encode_prompt(ex).input_ids
        if len(full) > budget and not truncate:
            raise DataError(
                str(dialogues), f"record {line} (id {ex.id})", "dialogue",
                f"the prompt is {len(full)} tokens; the server's context of {context} leaves {budget} "
                f"after {max_new_tokens} for the summary: shorten it, or pass --truncate to cut the dialogue",
            )  # fmt: skip
        prompts.append(fmt.encode_prompt(ex, budget).input_ids if len(full) > budget else full)
    return prompts


def summarize(
    run_dir: Path, dialogues: Path, out: Path, base_url: str, *, max_new_tokens: int = MAX_NEW_TOKENS,
    truncate: bool = False, wait_s: float = 120, batch_size: int = BATCH_SIZE,
) -> Path:  # fmt: skip
    run = yaml.safe_load((run_dir / "run.yml").read_text())
    fmt, stop = prompt_format(run)
    examples = read_dialogues(dialogues)
    context = wait_for_server(base_url, ADAPTER_NAME, wait_s)
    prompts = encode_prompts(fmt, examples, dialogues, context, max_new_tokens, truncate)
    keys = [request_key(run_dir, p, max_new_tokens, stop) for p in prompts]
    partial = PartialPredictions(out.with_suffix(".partial.jsonl"))
    todo = [i for i, ex in enumerate(examples) if partial.done.get(ex.id, {}).get("key") != keys[i]]
    done = len(examples) - len(todo)
    if done:
        log.info("%d of %d already summarized (%s)", done, len(examples), partial.path)
    for batch in chunks(todo, batch_size):
        payload = {
            "model": ADAPTER_NAME,
            "prompt": [prompts[i] for i in batch],
            "max_tokens": max_new_tokens,
            "temperature": 0.0,
            "stop_token_ids": stop,
            "skip_special_tokens": True,
        }
        try:
            choices = complete(base_url, payload)
        except Refused as err:
            first, last = examples[batch[0]].id, examples[batch[-1]].id
            records = f"records {batch[0] + 1}-{batch[-1] + 1} (ids {first} to {last})"
            raise DataError(str(dialogues), records, None, f"the server refused them: {err}") from None
        except ServerError as err:
            raise ServerError(
                f"{err}; the {done} summaries written so far are kept in {partial.path}: "
                "start the server and run the same command again for the rest"
            ) from None
        rows = [
            {"id": examples[i].id, "summary": c["text"].strip(), "stopped": c["finish_reason"] == "stop", "key": keys[i]}
            for i, c in zip(batch, choices, strict=True)
        ]  # fmt: skip
        partial.append(rows)
        done += len(rows)
        log.info("%d of %d summarized", done, len(examples))
    written = atomic.write_jsonl(
        out, ({k: v for k, v in partial.done[ex.id].items() if k != "key"} for ex in examples)
    )
    partial.path.unlink()
    return written


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
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="prompts per request")
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
            batch_size=args.batch_size,
        )
    except (DataError, ServerError, FileNotFoundError) as err:
        log.error("%s", err)
        return 2
    print(f"wrote {written}")
    return 0

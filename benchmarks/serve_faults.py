"""The served summarizer against bad requests and faults: what `make serve`'s server answers to
each, and whether it goes on serving (make bench-serve-faults).

    python -m benchmarks.serve_faults RECIPE [--run-dir DIR] [--merged] [--in-flight 1000] [--out FILE]

It starts the run's server on a free localhost port (the API key, if any, from VLLM_API_KEY),
then checks, in this order:
- each of :func:`bad_requests`: a 4xx that says why, and the next good request gets its answer;
- a client that hangs up mid-answer: its request is aborted and its slot freed;
- ``--in-flight`` requests at once: every one answered, every slot free again after;
- SIGTERM with requests in flight: each finishes (or fails with a status and a message), and
  the server exits within its shutdown timeout;
- a restart: the server serves again.
It writes one Markdown table, with the figures as JSON beside it, and exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from pathlib import Path

import yaml

from benchmarks.serve_load import load_gauges, metric_values, seconds_until_free, write_report
from eval.api_key import api_key, auth_headers
from eval.hardware import hardware
from eval.serve import SHUTDOWN_TIMEOUT_S, context_length, free_port, running_server
from eval.summarize import ADAPTER_NAME, ServerError
from training.paths import default_run_dir

COMPLETIONS = "/v1/completions"
IN_FLIGHT = 1000
# a stopped server must be gone this long after its drain window
EXIT_SLACK_S = 15
SIGTERM_LOAD = 8  # requests in flight when SIGTERM comes
SIGTERM_TOKENS = 256  # each runs this long (EOS ignored), so the signal finds them running
ANSWER_WAIT_S = 60  # after the server exited, for the answers of the requests it had


def good_request(model: str, max_tokens: int = 4) -> dict:
    return {"model": model, "prompt": "#Person1#: Hello.", "max_tokens": max_tokens, "temperature": 0}


def bad_requests(model: str, context: int) -> dict[str, tuple[dict | bytes, int]]:
    """name -> (body, or raw bytes sent as the body; the status the server must answer)."""
    good = good_request(model)
    return {
        # about 6 tokens a repeat: several times the context
        "dialogue longer than the context": ({**good, "prompt": "#Person1#: Hello there. " * context}, 400),
        "unknown model": ({**good, "model": "gpt-9"}, 404),
        "malformed JSON": (f'{{"model": "{model}", "prompt": '.encode(), 400),
        "empty prompt": ({**good, "prompt": ""}, 400),
        "prompt of the wrong type": ({**good, "prompt": {"text": "hi"}}, 400),
        "token id out of vocabulary": ({**good, "prompt": [10**7]}, 400),
        "absurd max_tokens": ({**good, "max_tokens": 10**9}, 400),
        "negative max_tokens": ({**good, "max_tokens": -5}, 400),
    }  # fmt: skip


def request(
    url: str, path: str, body: dict | None = None, raw: bytes | None = None,
    key: str | None = None, timeout: float = 120,
) -> tuple[int, dict | str]:  # fmt: skip
    """(status, parsed JSON or text) of one request, with ``key`` (default: VLLM_API_KEY's)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    key = key if key is not None else api_key()
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url + path, data, headers), timeout=timeout) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as err:
        status, text = err.code, err.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def error_message(answer: dict | str) -> str:
    """The message of an OpenAI-style error answer (the text itself if it is not one)."""
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        return str(answer["error"].get("message", ""))
    return answer if isinstance(answer, str) else json.dumps(answer)


def gauge(url: str, name: str) -> float:
    """A counter or gauge of the server's Prometheus metrics, summed over its labels; a
    ServerError where the server does not report it (a check must not read it as zero)."""
    values = metric_values(url, [name])[name]
    if not values:
        raise ServerError(f"{url}/metrics has no {name}: this check needs vLLM's own metrics")
    return sum(values)


def queued(url: str) -> float:
    """How many requests the server is running or holding."""
    gauges = load_gauges(url)
    return gauges["vllm:num_requests_running"] + gauges["vllm:num_requests_waiting"]


def row(check: str, expected: str, got: str, passed: bool, **figures) -> dict:
    return {"check": check, "expected": expected, "got": got, "passed": passed, **figures}


def check_bad_request(url: str, model: str, name: str, body: dict | bytes, status: int) -> dict:
    raw = body if isinstance(body, bytes) else None
    got, answer = request(url, COMPLETIONS, None if raw else body, raw=raw)
    after, _ = request(url, COMPLETIONS, good_request(model))
    message = error_message(answer)
    return row(name, f"{status}, then 200", f"{got} {message[:120]!r}, then {after}",
               got == status and after == 200, status=got, message=message)  # fmt: skip


def hang_up(url: str, model: str, max_tokens: int, wait_s: float = 60) -> dict:
    """A client that sends a long request and closes its connection once the request runs."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    before = gauge(url, "vllm:generation_tokens_total")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    body = {**good_request(model, max_tokens), "ignore_eos": True}
    connection.request(
        "POST", COMPLETIONS, json.dumps(body), {"Content-Type": "application/json", **auth_headers()}
    )
    deadline = time.time() + wait_s
    while not gauge(url, "vllm:num_requests_running") and time.time() < deadline:
        time.sleep(0.01)
    connection.sock.close()
    closed = time.time()
    while gauge(url, "vllm:num_requests_running") and time.time() < closed + wait_s:
        time.sleep(0.05)
    freed_after = round(time.time() - closed, 1)
    generated = gauge(url, "vllm:generation_tokens_total") - before
    after, _ = request(url, COMPLETIONS, good_request(model))
    aborted = 0 < generated < max_tokens and freed_after < wait_s
    return row("client hangs up mid-answer", f"aborted before {max_tokens} tokens, slot freed, then 200",
               f"{generated:.0f} of {max_tokens} tokens generated; slot freed after {freed_after} s; then {after}",
               aborted and after == 200, generated=generated, freed_after_s=freed_after)  # fmt: skip


def flood(url: str, model: str, in_flight: int) -> dict:
    """``in_flight`` short requests sent at once."""
    bodies = [{**good_request(model, 8), "prompt": f"#Person1#: Request {i}."} for i in range(in_flight)]
    started = time.time()
    with ThreadPoolExecutor(in_flight) as pool:
        answers = list(pool.map(lambda body: request(url, COMPLETIONS, body, timeout=600), bodies))
    took = round(time.time() - started, 1)
    statuses = Counter(status for status, _ in answers)
    texts = sum(1 for status, a in answers if status == 200 and a["choices"][0]["text"])
    free = seconds_until_free(url)
    after, _ = request(url, COMPLETIONS, good_request(model))
    got = ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()))
    return row(f"{in_flight} requests at once", f"{in_flight} x 200 with text, every slot free, then 200",
               f"{got} in {took} s; slots free after {free if free is not None else 'never'} s; then {after}",
               texts == in_flight and free is not None and after == 200,
               seconds=took, slots_free_after_s=free, statuses=dict(statuses))  # fmt: skip


def sigterm_under_load(
    server: subprocess.Popen, url: str, model: str, in_flight: int = SIGTERM_LOAD,
    max_tokens: int = SIGTERM_TOKENS, timeout: float = SHUTDOWN_TIMEOUT_S,
) -> dict:  # fmt: skip
    """SIGTERM once ``in_flight`` requests are running or waiting; how each ended, and when
    the server exited. ``answers``: (status, finish reason or error message) per request."""
    body = {**good_request(model, max_tokens), "ignore_eos": True}
    with ThreadPoolExecutor(in_flight) as pool:
        load = [pool.submit(request, url, COMPLETIONS, {**body, "prompt": f"Load {i}."},
                            timeout=timeout + EXIT_SLACK_S + ANSWER_WAIT_S) for i in range(in_flight)]  # fmt: skip
        deadline = time.time() + 60
        while queued(url) < in_flight and time.time() < deadline:
            time.sleep(0.01)
        server.send_signal(signal.SIGTERM)
        sent = time.time()
        try:
            code = server.wait(timeout=timeout + EXIT_SLACK_S)
        except subprocess.TimeoutExpired:
            code = None
        stopped_after = round(time.time() - sent, 1)
        answers = [answer_of(future, ANSWER_WAIT_S) for future in load]
    counts = Counter(f"{status} {how}" for status, how in answers)
    # finished, or refused with a status and a message; a dropped connection is neither
    clear = all(
        (status == 200 and how in ("length", "stop")) or (status >= 400 and how) for status, how in answers
    )
    got = ", ".join(f"{n} x {a}" for a, n in sorted(counts.items()))
    return row(f"SIGTERM with {in_flight} requests in flight",
               f"each finishes or fails with a message; exit 0 within {timeout + EXIT_SLACK_S:.0f} s",
               f"{got}; exit {code} after {stopped_after} s", clear and code == 0,
               exit_code=code, stopped_after_s=stopped_after, answers=answers)  # fmt: skip


def answer_of(future: Future, wait_s: float) -> tuple[int, str]:
    """How one request sent before SIGTERM ended; status 0 where no HTTP answer came (a
    dropped connection, or none within ``wait_s`` of the server's exit)."""
    try:
        return ended(*future.result(timeout=wait_s))
    except TimeoutError:
        return 0, f"no answer {wait_s:.0f} s after the server exited"
    except (OSError, http.client.HTTPException) as err:
        return 0, f"no answer: {type(err).__name__}: {err}"


def ended(status: int, answer: dict | str) -> tuple[int, str]:
    """How one request ended: its status and finish reason, or its error message."""
    if status == 200 and isinstance(answer, dict):
        return status, str(answer["choices"][0]["finish_reason"])
    return status, error_message(answer)


def table(rows: list[dict]) -> str:
    lines = ["| check | expected | got | passed |", "|---|---|---|---|"]
    lines += [f"| {r['check']} | {r['expected']} | {r['got'].replace('|', '/')} | {'yes' if r['passed'] else '**no**'} |" for r in rows]  # fmt: skip
    return "\n".join(lines) + "\n"


def run_checks(run_dir: Path, log: Path, merged: bool, in_flight: int) -> list[dict]:
    context = context_length(run_dir)
    with running_server(run_dir, free_port(), log, merged=merged) as (url, server):
        rows = [check_bad_request(url, ADAPTER_NAME, name, body, status)
                for name, (body, status) in bad_requests(ADAPTER_NAME, context).items()]  # fmt: skip
        rows.append(hang_up(url, ADAPTER_NAME, context // 2))
        rows.append(flood(url, ADAPTER_NAME, in_flight))
        rows.append(sigterm_under_load(server, url, ADAPTER_NAME))
    started = time.time()
    with running_server(run_dir, free_port(), log.with_suffix(".restart.log"), merged=merged) as (url, _):
        ready = round(time.time() - started, 1)
        status, _ = request(url, COMPLETIONS, good_request(ADAPTER_NAME))
    rows.append(row("restart after SIGTERM", "serves again", f"ready in {ready} s, then {status}",
                    status == 200, ready_s=ready))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe")
    parser.add_argument("--run-dir", type=Path)
    parser.add_argument("--merged", action="store_true", help="serve the model `make merge` wrote")
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT, help="requests sent at once")
    parser.add_argument("--out", type=Path, help="default: <run dir>/serve-faults.md")
    args = parser.parse_args(argv)
    run_dir = (args.run_dir or default_run_dir(args.recipe)).resolve()
    run = yaml.safe_load((run_dir / "run.yml").read_text())
    out = args.out or run_dir / "serve-faults.md"
    try:
        rows = run_checks(run_dir, out.with_suffix(".server.log"), args.merged, args.in_flight)
    except ServerError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    served = "merged" if args.merged else "adapter as the LoRA module"
    what = f"`make serve`'s server for {run_dir.name} ({run['base_model']}, {served}), {date.today()}, {hardware()}."
    write_report(out, what, "benchmarks.serve_faults", argv, table(rows), rows)
    return 0 if all(r["passed"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

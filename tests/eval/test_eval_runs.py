"""`make eval` as a user runs it, on CPU: a real QLoRA run (trained here by the training
environment) evaluated in every adapter mode, the default path (auto -> merged -> vLLM), a
SIGKILLed evaluation resumed, and a change of settings that discards stale predictions."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from eval.pipeline import log as eval_log
from eval.pipeline import main as evaluate_main
from eval.predictions import PartialPredictions
from tests.conftest import DEMO_DATA, REPO
from tests.eval.conftest import train_in_training_env

EVAL_CMD = [sys.executable, str(REPO / "scripts" / "evaluate.py")]


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def predictions(run_dir, out="eval"):
    return lines(run_dir / out / "predictions.jsonl")


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory, tiny_llama):
    """smollm2-dialogsum-qlora on the tiny Llama, 2 steps, trained by scripts/train.py in the
    training environment: a real QLoRA adapter as `make train` writes it."""
    run_dir = tmp_path_factory.mktemp("qlora") / "run"
    train_in_training_env(
        "smollm2-dialogsum-qlora", run_dir, f"base_model={tiny_llama}", "max_steps=2", "save_steps=1",
        "evaluation.limit=4", "evaluation.max_new_tokens=10", "--data-dir", str(DEMO_DATA),
    )  # fmt: skip
    assert yaml.safe_load((run_dir / "run.yml").read_text())["adapter"] == "qlora"
    return run_dir


@pytest.mark.slow
def test_qlora_run_evaluates_in_every_adapter_mode(qlora_run):
    texts = {}
    for mode, backend, engine in (("auto", None, "vllm"), ("lora", None, "vllm"), ("quantized", "hf", "hf")):
        args = ["smollm2-dialogsum-qlora", "--run-dir", str(qlora_run), "--out-dir", str(qlora_run / mode)]
        args += ["--adapter-mode", mode] + (["--backend", backend] if backend else [])
        assert evaluate_main(args) == 0, mode
        generation = json.loads((qlora_run / mode / "metrics.json").read_text())["generation"]
        assert generation["backend"] == engine and generation["max_new_tokens"] == 10
        rows = predictions(qlora_run, mode)
        assert [r["id"] for r in rows] == [r["id"] for r in predictions(qlora_run, "auto")] and len(rows) == 4
        texts[mode] = [r["finetuned"]["text"] for r in rows]
    # the default path on a CPU: auto -> merged into the NF4-dequantized base -> vLLM
    assert (
        json.loads((qlora_run / "auto" / "metrics.json").read_text())["generation"]["adapter_mode"]
        == "merged"
    )
    check = json.loads((qlora_run / "merged" / "merge_check.json").read_text())
    assert check["nf4_round_trip_layers"] == 14 and check["quantized_from"] == "float32"
    assert check["vs_4bit_base_plus_adapter"] < check["4bit_merge_vs_4bit_base_plus_adapter"]


def evaluate_cmd(run_dir, *extra):
    return [*EVAL_CMD, "tiny", "--run-dir", str(run_dir), "--adapter-mode", "lora", "--deterministic", *extra]


@pytest.mark.slow
def test_sigkilled_evaluation_resumes_and_matches_an_uninterrupted_run(tiny_run):
    run = yaml.safe_load((tiny_run / "run.yml").read_text())
    run["evaluation"].update(limit=40, max_new_tokens=32)
    (tiny_run / "run.yml").write_text(yaml.safe_dump(run))
    partials = {name: tiny_run / "eval" / f"{name}.partial.jsonl" for name in ("base", "finetuned")}
    proc = subprocess.Popen(
        evaluate_cmd(tiny_run, "--save-every", "2"),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while len(lines(partials["base"])) < 6:
        assert proc.poll() is None and time.time() < deadline, "evaluation ended or stalled before the kill"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # the evaluator and its vLLM engine process
    proc.wait()
    # A line cut by the kill is dropped. The base may finish between the poll and the kill
    # on a fast machine; the kill then lands in the fine-tuned system's generation.
    kept = {name: len(PartialPredictions(path).done) for name, path in partials.items()}
    assert kept["base"] >= 6 and sum(kept.values()) < 80
    assert not (tiny_run / "eval" / "predictions.jsonl").exists()

    resumed = subprocess.run(evaluate_cmd(tiny_run, "--save-every", "2"), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    for name, done in kept.items():
        said = (
            "all 40 items already generated"
            if done == 40
            else f"generating {40 - done} of 40 ({done} already done)"
        )
        assert f"{name}: {said}" in resumed.stderr
    for name in ("base", "finetuned"):  # every item once, none generated twice
        ids = [r["id"] for r in lines(tiny_run / "eval" / f"{name}.partial.jsonl")]
        assert len(ids) == len(set(ids)) == 40

    fresh = subprocess.run(
        evaluate_cmd(tiny_run, "--out-dir", str(tiny_run / "fresh")), capture_output=True, text=True
    )
    assert fresh.returncode == 0, fresh.stderr[-2000:]
    assert predictions(tiny_run) == predictions(tiny_run, "fresh")  # deterministic mode: same text


@pytest.mark.slow
def test_changed_settings_discard_stale_predictions(tiny_run, caplog):
    args = ["tiny", "--run-dir", str(tiny_run), "--backend", "hf", "--limit", "3"]
    assert evaluate_main([*args, "--adapter-mode", "lora"]) == 0
    generation = json.loads((tiny_run / "eval" / "metrics.json").read_text())["generation"]
    first = generation["throughput"]
    assert first["finetuned"]["items"] == 3
    # the whole evaluation's wall time beside the rates: it holds the engine starts and the generation
    generating = sum(t["items"] / t["prompts_per_s"] for t in first.values())
    assert (
        generation["evaluation_wall_seconds"] >= sum(generation["engine_start_seconds"].values()) + generating
    )
    wall = f"The whole evaluation took {generation['evaluation_wall_seconds']} s in this command"
    assert wall in (tiny_run / "eval" / "report.md").read_text()
    assert evaluate_main([*args, "--adapter-mode", "lora"]) == 0  # unchanged: all resumed
    assert json.loads((tiny_run / "eval" / "metrics.json").read_text())["generation"]["throughput"] == {}
    caplog.clear()
    eval_log.addHandler(caplog.handler)  # the evaluation's logger does not propagate (keep_log_visible)
    try:
        assert evaluate_main([*args, "--adapter-mode", "merged"]) == 0
    finally:
        eval_log.removeHandler(caplog.handler)
    assert "generation settings changed" in caplog.text
    again = json.loads((tiny_run / "eval" / "metrics.json").read_text())["generation"]["throughput"]
    assert again["base"]["items"] == 3 and again["finetuned"]["items"] == 3

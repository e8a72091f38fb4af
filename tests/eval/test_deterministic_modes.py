"""DETERMINISTIC=1 (one sequence at a time) and DETERMINISTIC=batch-invariant (vLLM's
batch-invariant kernels at full batching, NVIDIA GPUs of compute capability 9.0+ only):
chosen on the command line, refused early where they cannot run."""

import pytest

from eval.backends import EngineSettings
from eval.backends.vllm import check_batch_invariant, engine_kwargs
from eval.pipeline import main as evaluate_main
from eval.pipeline import parse_args
from eval.serve import main as serve_main
from eval.serve import server_environment


def test_the_flag_alone_is_sequential_and_a_mode_can_be_named():
    assert parse_args(["tiny", "--deterministic"]).deterministic == "sequential"
    assert parse_args(["tiny", "--deterministic", "batch-invariant"]).deterministic == "batch-invariant"
    assert parse_args(["tiny"]).deterministic is None
    with pytest.raises(SystemExit):
        parse_args(["tiny", "--deterministic", "fast"])


def test_batch_invariance_keeps_full_batching_and_sequential_does_not():
    def kwargs(mode):
        return engine_kwargs("m", EngineSettings(max_model_len=256, deterministic=mode), seed=0, cuda=True)

    assert kwargs("sequential")["max_num_seqs"] == 1
    assert "max_num_seqs" not in kwargs("batch-invariant") and "max_num_seqs" not in kwargs(None)


def test_without_a_gpu_batch_invariance_is_refused_before_any_engine(tiny_run):
    with pytest.raises(ValueError, match="needs an NVIDIA GPUs*.*use DETERMINISTIC=1"):
        check_batch_invariant()
    assert evaluate_main(["tiny", "--run-dir", str(tiny_run), "--deterministic", "batch-invariant"]) == 2
    assert not (tiny_run / "eval" / "predictions.jsonl").exists()


def test_the_server_is_refused_too_and_otherwise_gets_no_switch(tiny_run, capsys, monkeypatch):
    def started(*args):
        raise AssertionError("the server was started")

    monkeypatch.setattr("eval.serve.os.execv", started)  # a refusal that failed must not become a server
    assert server_environment(None) == {} and server_environment("sequential") == {}
    assert serve_main(["tiny", "--run-dir", str(tiny_run), "--deterministic", "batch-invariant"]) == 2
    assert "DETERMINISTIC=batch-invariant needs an NVIDIA GPU" in capsys.readouterr().err


def gpu_evaluation(tiny_run, monkeypatch, deterministic):
    """An evaluation of the tiny run as vLLM on a GPU would set it up (the mode is chosen
    before any engine, so no GPU is needed to check the choice)."""
    from eval.pipeline import EvalRequest, Evaluation

    monkeypatch.setattr("eval.pipeline.has_cuda", lambda: True)
    evaluation = Evaluation(EvalRequest("tiny", run_dir=tiny_run, deterministic=deterministic))
    evaluation.backend_name = "vllm"
    return evaluation


def test_on_a_gpu_deterministic_mode_merges_the_adapter(tiny_run, monkeypatch):
    """vLLM's LoRA kernels changed 38 of 100 texts between two one-at-a-time runs on an H100;
    merged, none did (results/evaluation.md): DETERMINISTIC=1 merges there unless told not to."""
    assert gpu_evaluation(tiny_run, monkeypatch, "sequential").adapter_mode("auto") == "merged"
    assert gpu_evaluation(tiny_run, monkeypatch, None).adapter_mode("auto") == "lora"
    assert gpu_evaluation(tiny_run, monkeypatch, "batch-invariant").adapter_mode("auto") == "lora"


def test_on_a_gpu_an_asked_lora_adapter_stays_and_the_report_says_it_is_not_deterministic(
    tiny_run, monkeypatch, caplog
):
    evaluation = gpu_evaluation(tiny_run, monkeypatch, "sequential")
    evaluation.mode = evaluation.adapter_mode("lora")
    assert evaluation.mode == "lora"
    assert "can change texts between two identical runs" in caplog.text
    assert evaluation.stability_note().startswith("Not deterministic")
    evaluation.mode = "merged"
    assert evaluation.stability_note().startswith("Deterministic by design")


def test_on_a_gpu_the_deterministic_server_needs_the_merged_model(tiny_run, capsys, monkeypatch):
    def started(*args):
        raise AssertionError("the server was started")

    monkeypatch.setattr("eval.serve.os.execv", started)
    monkeypatch.setattr("eval.serve.has_cuda", lambda: True)
    assert serve_main(["tiny", "--run-dir", str(tiny_run), "--deterministic"]) == 2
    assert "add MERGED=1" in capsys.readouterr().err

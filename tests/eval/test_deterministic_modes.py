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

"""A run that trained every weight (`adapter: null`, e.g. llama2-dolly-full): evaluated,
scored checkpoint by checkpoint and served as its own model, never as an adapter."""

import json
import shutil

import pytest
import yaml

from eval import pipeline
from eval.backends import reloads_exactly
from eval.backends.hf import HFBackend
from eval.checkpoints import CheckpointEvaluation, evaluate_checkpoints
from eval.pipeline import EvalRequest, EvaluationError, evaluate
from eval.serve import serve_command
from tests.conftest import perturbed_model
from tests.eval.conftest import texts_of


@pytest.fixture
def full_run(tiny_run, tiny_llama):
    """tiny_run as a full fine-tune leaves it: the final model and two checkpoints, each a
    whole model with different weights, and a validation split."""
    trained = tiny_run / "adapter"
    for path in trained.iterdir():
        path.unlink()
    perturbed_model(trained, tiny_llama, seed=1)
    perturbed_model(trained / "checkpoint-1", tiny_llama, seed=2)
    perturbed_model(trained / "checkpoint-2", tiny_llama, seed=3)
    run = yaml.safe_load((tiny_run / "run.yml").read_text())
    run["adapter"] = None
    run["data"]["validation_split"] = "validation"
    (tiny_run / "run.yml").write_text(yaml.safe_dump(run))
    return tiny_run


def test_the_fine_tuned_side_is_the_trained_model(full_run):
    assert evaluate(EvalRequest("tiny", run_dir=full_run, backend="hf", limit=3)) == 0
    metrics = json.loads((full_run / "eval" / "metrics.json").read_text())
    assert metrics["generation"]["adapter_mode"] == "full"
    assert metrics["provenance"]["lora"] == {}
    rows = [json.loads(line) for line in (full_run / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert [r["finetuned"]["text"] for r in rows] != [r["base"]["text"] for r in rows]
    card = (full_run / "adapter" / "README.md").read_text()
    assert "library_name: transformers" in card and "Every weight trained (no adapter)" in card


def test_an_adapter_mode_for_a_full_fine_tune_is_refused(full_run, caplog):
    request = EvalRequest("tiny", run_dir=full_run, backend="hf", limit=3, adapter_mode="merged")
    assert evaluate(request) == 2
    assert "trained every weight (adapter: null)" in caplog.text


def test_every_full_checkpoint_is_scored_and_best_is_evaluated(full_run):
    unusable = full_run / "adapter" / "checkpoint-3"  # sharded optimizer state, no model weights
    unusable.mkdir()
    shutil.copy(full_run / "adapter" / "checkpoint-1" / "config.json", unusable)
    assert evaluate_checkpoints(EvalRequest("tiny", run_dir=full_run, backend="hf", limit=3)) == 0
    out = full_run / "eval-checkpoints"
    scores = json.loads((out / "scores.json").read_text())
    assert [c["name"] for c in scores["checkpoints"]] == ["base", "checkpoint-1", "checkpoint-2"]
    texts = texts_of(out)
    assert len({tuple(t) for t in texts.values()}) == 3  # each checkpoint generated with its own weights
    assert evaluate(EvalRequest("tiny", run_dir=full_run, backend="hf", checkpoint="best")) == 0
    card = (full_run / "adapter" / scores["best"]["name"] / "README.md").read_text()
    assert f"model saved {scores['best']['name']}, chosen by validation ROUGE" in card


@pytest.mark.slow
def test_full_checkpoints_get_an_engine_each_with_vllm(full_run):
    """Not one engine reloaded in place for a model with tied embeddings (tiny_llama's): vLLM's
    reload left the tied output layer stale (the texts differed from fresh engines'), so each
    full checkpoint starts its own engine."""
    pytest.importorskip("vllm", reason="vLLM is not installed in this environment")
    request = EvalRequest("tiny", run_dir=full_run, backend="vllm", limit=3, deterministic="sequential")
    evaluation = CheckpointEvaluation(request)
    evaluation.setup()
    timing = evaluation.generate()
    assert (timing["engine_starts"], timing["weight_reloads"]) == (3, 0)
    evaluation.report(timing)
    assert len({tuple(t) for t in texts_of(full_run / "eval-checkpoints").values()}) == 3


def test_weights_are_loaded_in_place_only_where_that_is_exact(tiny_llama, tiny_llama_untied):
    vllm = pytest.importorskip("eval.backends.vllm", reason="vLLM is not installed in this environment")
    assert reloads_exactly(vllm.VLLMBackend, str(tiny_llama), every_weight=False)  # merged adapter
    assert not reloads_exactly(vllm.VLLMBackend, str(tiny_llama), every_weight=True)  # tied embeddings
    assert reloads_exactly(vllm.VLLMBackend, str(tiny_llama_untied), every_weight=True)
    assert not reloads_exactly(HFBackend, str(tiny_llama_untied), every_weight=True)


@pytest.mark.slow
def test_a_full_fine_tune_with_untied_embeddings_needs_one_vllm_engine(
    full_run, tiny_llama_untied, monkeypatch
):
    """The fine-tuned weights go into the base's running engine, and the texts are the ones an
    engine started on the fine-tuned model generates."""
    pytest.importorskip("vllm", reason="vLLM is not installed in this environment")
    run = yaml.safe_load((full_run / "run.yml").read_text())
    run["base_model"] = str(tiny_llama_untied)
    (full_run / "run.yml").write_text(yaml.safe_dump(run))
    perturbed_model(full_run / "adapter", tiny_llama_untied, seed=1)
    common = dict(run_dir=full_run, backend="vllm", limit=3, deterministic="sequential")

    assert evaluate(EvalRequest("tiny", out_dir=full_run / "one", **common)) == 0
    monkeypatch.setattr(pipeline, "reloads_exactly", lambda *args: False)
    assert evaluate(EvalRequest("tiny", out_dir=full_run / "two", **common)) == 0

    starts = {
        d: json.loads((full_run / d / "metrics.json").read_text())["generation"]["engine_starts"]
        for d in ("one", "two")
    }
    assert starts == {"one": 1, "two": 2}
    one, two = texts_of(full_run / "one"), texts_of(full_run / "two")
    assert one == two and one["finetuned"] != one["base"]


def test_a_full_fine_tune_is_served_as_its_own_model(full_run):
    cmd = serve_command(full_run, "127.0.0.1", 8000, max_model_len=600)
    assert cmd[cmd.index("--model") + 1] == str(full_run / "adapter")
    assert cmd[cmd.index("--served-model-name") + 1] == "finetuned"
    assert (
        cmd[cmd.index("--tokenizer") + 1] == yaml.safe_load((full_run / "run.yml").read_text())["base_model"]
    )
    assert "--enable-lora" not in cmd
    with pytest.raises(EvaluationError, match="nothing to merge"):
        serve_command(full_run, "127.0.0.1", 8000, max_model_len=600, merged=True)

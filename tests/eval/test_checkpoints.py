"""Choosing by ROUGE: every checkpoint scored on the validation split (hf: an engine each;
vLLM: one shared engine serving the checkpoints as separate adapters, or one engine taking
each merged checkpoint's weights in turn), CHECKPOINT=best evaluated on the test split, and
the grid a sweep runs."""

import itertools
import json
import shutil
from dataclasses import replace

import pytest
import yaml

from eval.checkpoint_paths import CheckpointError, checkpoint_path, find_checkpoints
from eval.checkpoints import CheckpointEvaluation, best_of, evaluate_checkpoints
from eval.checkpoints import main as checkpoints_main
from eval.pipeline import EvalRequest, Evaluation, evaluate
from eval.sweep import Sweep, SweepError, SweepRequest, parse_grid
from eval.sweep import parse_args as sweep_parse_args
from tests.conftest import random_adapter
from tests.eval.conftest import texts_of

STATE = {  # what the trainer logs into a checkpoint's trainer_state.json
    "log_history": [
        {"step": 1, "loss": 2.5},
        {"step": 1, "eval_loss": 2.25},
        {"step": 2, "loss": 2.0},
        {"step": 2, "eval_loss": 1.75},
    ]
}


@pytest.fixture
def checkpoint_run(tiny_run, tiny_llama, tiny_adapter, tmp_path):
    """tiny_run with two checkpoints holding DIFFERENT adapters, and a validation split."""
    shutil.copytree(tiny_adapter, tiny_run / "adapter" / "checkpoint-1")
    random_adapter(tiny_run / "adapter" / "checkpoint-2", tiny_llama, seed=2)
    (tiny_run / "adapter" / "checkpoint-2" / "trainer_state.json").write_text(json.dumps(STATE))
    run = yaml.safe_load((tiny_run / "run.yml").read_text())
    run["data"]["validation_split"] = "validation"
    (tiny_run / "run.yml").write_text(yaml.safe_dump(run))
    return tiny_run


def scores_of(run_dir, out="eval-checkpoints"):
    return json.loads((run_dir / out / "scores.json").read_text())


def test_every_checkpoint_is_scored_on_validation_and_best_is_evaluated_on_test(checkpoint_run):
    request = EvalRequest("tiny", run_dir=checkpoint_run, backend="hf", limit=3)
    assert evaluate_checkpoints(request) == 0
    scores = scores_of(checkpoint_run)
    assert [c["name"] for c in scores["checkpoints"]] == ["base", "checkpoint-1", "checkpoint-2"]
    assert scores["split"] == "validation" and scores["n"] == 3
    rows = [json.loads(line) for line in (checkpoint_run / "eval-checkpoints" / "predictions.jsonl").open()]
    assert all(r["id"].startswith("demo_validation_") for r in rows)
    texts = texts_of(checkpoint_run / "eval-checkpoints")
    assert texts["checkpoint-1"] != texts["checkpoint-2"]  # each checkpoint generated with its own adapter
    by_name = {c["name"]: c for c in scores["checkpoints"]}
    assert by_name["checkpoint-2"]["eval_loss"] == 1.75 and by_name["checkpoint-1"]["eval_loss"] == 2.25
    assert by_name["checkpoint-2"]["train_loss"] == 2.0 and scores["lowest_eval_loss"] == "checkpoint-2"
    trained = [c for c in scores["checkpoints"] if c["step"]]
    best = max(trained, key=lambda c: (c["scores"]["rouge1"]["mean"], -c["step"]))
    assert scores["best"]["name"] == best["name"]
    assert "Best checkpoint: step" in (checkpoint_run / "eval-checkpoints" / "report.md").read_text()

    # run again: everything is resumed, nothing generated, the timing of the first run kept
    timing = scores["timing"]
    assert evaluate_checkpoints(request) == 0
    assert scores_of(checkpoint_run)["timing"] == timing

    # CHECKPOINT=best: that checkpoint on the test split, apart from the final adapter's evaluation
    assert evaluate(EvalRequest("tiny", run_dir=checkpoint_run, backend="hf", checkpoint="best")) == 0
    out = checkpoint_run / f"eval-{scores['best']['name']}"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["generation"]["checkpoint"] == scores["best"]["name"]
    assert metrics["provenance"]["dataset"].startswith("dialogsum test")
    card = (checkpoint_run / "adapter" / scores["best"]["name"] / "README.md").read_text()
    assert f"saved {scores['best']['name']}, chosen by validation ROUGE" in card
    report = (out / "report.md").read_text()
    assert "Checkpoints (validation ROUGE)" in report
    assert "## Faithfulness" in report and "faithfulness" in metrics["source_checks"]  # on by default


def mark_base(out_dir, text):
    """Every saved base generation of an evaluation becomes `text`: where it turns up again, it
    was copied, not regenerated."""
    partial = out_dir / "base.partial.jsonl"
    rows = [json.loads(line) for line in partial.read_text().splitlines()]
    partial.write_text("".join(json.dumps({**r, "text": text}) + "\n" for r in rows))


def test_the_base_is_taken_from_another_evaluation_only_when_its_settings_match(checkpoint_run, tmp_path):
    first = EvalRequest("tiny", run_dir=checkpoint_run, backend="hf", limit=3)
    assert evaluate_checkpoints(first) == 0
    source = checkpoint_run / "eval-checkpoints"
    mark_base(source, "from the first run")

    same = EvalRequest("tiny", run_dir=checkpoint_run, backend="hf", limit=3, out_dir=tmp_path / "same")
    assert evaluate_checkpoints(same, base_from=[source]) == 0
    assert set(texts_of(tmp_path / "same")["base"]) == {"from the first run"}

    other = EvalRequest(
        "tiny",
        run_dir=checkpoint_run,
        backend="hf",
        limit=3,
        out_dir=tmp_path / "other",
        deterministic="sequential",
    )
    assert evaluate_checkpoints(other, base_from=[source]) == 0  # other settings: generated here
    assert "from the first run" not in texts_of(tmp_path / "other")["base"]

    # several sources (a sweep's earlier points): the first whose settings match is taken
    mark_base(tmp_path / "other", "from the other run")
    third = replace(other, out_dir=tmp_path / "third")
    assert evaluate_checkpoints(third, base_from=[source, tmp_path / "other"]) == 0
    assert set(texts_of(tmp_path / "third")["base"]) == {"from the other run"}


@pytest.mark.slow
def test_one_vllm_engine_serves_every_checkpoint_as_its_own_adapter(checkpoint_run):
    """Requests of both checkpoints share one engine's batches and each gets its own adapter:
    the same text as an engine per checkpoint (deterministic mode)."""
    common = dict(
        run_dir=checkpoint_run, backend="vllm", adapter_mode="lora", limit=3, deterministic="sequential"
    )
    shared = CheckpointEvaluation(EvalRequest("tiny", out_dir=checkpoint_run / "shared", **common), "shared")
    shared.setup()
    assert shared.shared and shared.engine_settings.max_loras == 2
    assert shared.generate()["engine_starts"] == 1
    shared.report({})
    alone = CheckpointEvaluation(
        EvalRequest("tiny", out_dir=checkpoint_run / "alone", **common), "per-checkpoint"
    )
    alone.setup()
    # the shared engine's batches hold the base's and both checkpoints' requests for 3 items
    assert (alone.engine_settings.max_batch, shared.engine_settings.max_batch) == (3, 9)
    assert alone.generate()["engine_starts"] == 3
    alone.report({})
    one, each = texts_of(checkpoint_run / "shared"), texts_of(checkpoint_run / "alone")
    assert one == each
    assert one["checkpoint-1"] != one["checkpoint-2"]


@pytest.mark.slow
def test_merged_checkpoints_reloaded_into_one_vllm_engine_generate_as_fresh_engines(checkpoint_run):
    """vLLM on a CPU merges each checkpoint into the base: one engine takes every merged copy's
    weights in place and generates the same text as a new engine started on that copy. The
    reload is real: the base and the two different random adapters give three different texts."""
    pytest.importorskip("vllm", reason="vLLM is not installed in this environment")
    common = dict(
        run_dir=checkpoint_run, backend="vllm", adapter_mode="merged", limit=3, deterministic="sequential"
    )
    reloaded = CheckpointEvaluation(EvalRequest("tiny", out_dir=checkpoint_run / "reloaded", **common))
    reloaded.setup()
    timing = reloaded.generate()
    assert (timing["engine_starts"], timing["weight_reloads"]) == (1, 2)
    reloaded.report(timing)
    assert not any((checkpoint_run / "reloaded" / "merged").iterdir())  # merged copies removed
    fresh = CheckpointEvaluation(
        EvalRequest("tiny", out_dir=checkpoint_run / "fresh", **common), "per-checkpoint"
    )
    fresh.setup()
    timing = fresh.generate()
    assert (timing["engine_starts"], timing["weight_reloads"]) == (3, 0)
    fresh.report(timing)
    one, each = texts_of(checkpoint_run / "reloaded"), texts_of(checkpoint_run / "fresh")
    assert one == each
    assert len({tuple(texts) for texts in one.values()}) == 3


@pytest.mark.slow
def test_two_replicas_score_every_checkpoint_as_one_engine_does(checkpoint_run):
    """GPUS=2 (on the CPU the replicas share the cores): each replica merges the checkpoints
    into a folder of its own and generates its share of the items; the merged texts equal one
    engine's, and nothing of the replicas is left behind."""
    pytest.importorskip("vllm", reason="vLLM is not installed in this environment")
    common = ["tiny", "--run-dir", str(checkpoint_run), "--backend", "vllm", "--adapter-mode", "merged"]
    common += ["--limit", "3", "--deterministic"]
    one, two = checkpoint_run / "one", checkpoint_run / "two"
    assert checkpoints_main([*common, "--out-dir", str(one)]) == 0
    assert checkpoints_main([*common, "--out-dir", str(two), "--gpus", "2"]) == 0
    assert texts_of(two) == texts_of(one)
    assert [c["scores"] for c in scores_of(checkpoint_run, "two")["checkpoints"]] == [
        c["scores"] for c in scores_of(checkpoint_run, "one")["checkpoints"]
    ]
    timing = scores_of(checkpoint_run, "two")["timing"]
    assert (
        timing["data_parallel_replicas"] == 2 and timing["engine_starts"] == 2
    )  # one each, weights reloaded
    assert not (two / "shards").exists() and not list(two.glob("*.shard-*"))


def test_weights_of_another_architecture_are_not_loaded_into_an_engine(tiny_llama, tiny_phi):
    from eval.backends.vllm import architecture_of, check_reloadable

    check_reloadable(str(tiny_llama), architecture_of(str(tiny_llama)), str(tiny_llama))
    with pytest.raises(ValueError, match="architecture differs .*'architectures'.*start a new engine"):
        check_reloadable(str(tiny_llama), architecture_of(str(tiny_llama)), str(tiny_phi))


def test_a_run_without_validation_split_or_checkpoints_is_refused(tiny_run, checkpoint_run):
    run = yaml.safe_load((checkpoint_run / "run.yml").read_text())
    run["data"]["validation_split"] = None
    (checkpoint_run / "run.yml").write_text(yaml.safe_dump(run))
    with pytest.raises(ValueError, match="names no data.validation_split"):
        CheckpointEvaluation(EvalRequest("tiny", run_dir=checkpoint_run)).settings()
    for found in find_checkpoints(checkpoint_run):
        shutil.rmtree(found.path)
    with pytest.raises(ValueError, match="holds no checkpoint"):
        CheckpointEvaluation(EvalRequest("tiny", run_dir=checkpoint_run))


def test_checkpoint_names_resolve_or_say_what_exists(checkpoint_run):
    assert checkpoint_path(checkpoint_run, "2") == checkpoint_run / "adapter" / "checkpoint-2"
    with pytest.raises(CheckpointError, match="saved steps: 1, 2"):
        checkpoint_path(checkpoint_run, "7")
    with pytest.raises(CheckpointError, match="score the checkpoints first"):
        checkpoint_path(checkpoint_run, "best")
    with pytest.raises(CheckpointError, match="'best' or a step number"):
        checkpoint_path(checkpoint_run, "last")


def test_limit_is_one_seeded_subset_in_split_order_for_every_command(checkpoint_run):
    evaluation = CheckpointEvaluation(EvalRequest("tiny", run_dir=checkpoint_run))
    items = list(range(40))
    picked = evaluation.select(items, 10)
    assert picked == sorted(picked) and len(set(picked)) == 10 and picked != items[:10]
    assert evaluation.select(items, 10) == picked and evaluation.select(items, None) == items
    # make eval's LIMIT means the same: the same items as make eval-checkpoints
    assert Evaluation(EvalRequest("tiny", run_dir=checkpoint_run)).select(items, 10) == picked


def test_best_is_the_highest_mean_and_the_earlier_step_on_a_tie():
    def row(step, score):
        return {"step": step, "scores": {"rouge1": {"mean": score}}}

    rows = [row(0, 99.0), row(10, 40.0), row(20, 41.0), row(30, 41.0)]
    assert best_of(rows, "rouge1")["step"] == 20  # the base (step 0) is never chosen


def test_sweep_grid():
    points = parse_grid("learning_rate=1e-4,3e-4 lora_r+lora_alpha=8+16,32+64")
    assert [p.overrides for p in points] == [
        ["learning_rate=1e-4", "lora_r=8", "lora_alpha=16"],
        ["learning_rate=1e-4", "lora_r=32", "lora_alpha=64"],
        ["learning_rate=3e-4", "lora_r=8", "lora_alpha=16"],
        ["learning_rate=3e-4", "lora_r=32", "lora_alpha=64"],
    ]
    assert points[0].name == "learning_rate-1e-4_lora_r-8_lora_alpha-16"
    for bad, message in (
        ("", "SWEEP is empty"),
        ("learning_rate", "is not key=value"),
        ("lr=1,1", "repeats a value"),
        ("lr=1 lr=2", "lr is given twice"),
        ("lora_r+lora_alpha=8", "needs 2 '\\+'-joined values"),
    ):
        with pytest.raises(SweepError, match=message):
            parse_grid(bad)


def test_each_sweep_point_offers_every_earlier_point_as_its_base_source(tmp_path):
    """A grid that mixes LoRA and full fine-tuning: the third point (full) can take the base of
    the second (full) even though the first (LoRA) generated it under other settings."""
    sweep = Sweep(
        SweepRequest("tiny", "adapter+learning_rate=lora+1e-3,null+4e-4,null+8e-4", out_dir=tmp_path)
    )

    def sources(command: list[str]) -> list[str]:
        if "--base-from" not in command:
            return []
        rest = command[command.index("--base-from") + 1 :]
        return list(itertools.takewhile(lambda arg: not arg.startswith("--"), rest))

    first, second, third = (sources(sweep.score_command(p)) for p in sweep.points)
    outs = [str(sweep.run_dir(p) / "eval-checkpoints") for p in sweep.points]
    assert (first, second, third) == ([], outs[:1], outs[:2])


def test_a_sweep_on_several_gpus_trains_and_scores_every_point_on_them(tmp_path):
    grid = "learning_rate=1e-4,3e-4"
    one = Sweep(SweepRequest("tiny", grid, out_dir=tmp_path))
    assert "--gpus" not in one.train_command(one.points[1]) + one.score_command(one.points[1])
    four = Sweep(SweepRequest("tiny", grid, out_dir=tmp_path, gpus=4))
    for command in (four.train_command(four.points[1]), four.score_command(four.points[1])):
        assert command[command.index("--gpus") + 1] == "4"
    assert sweep_parse_args(["tiny", grid, "--gpus", "4"]).gpus == 4

"""`make eval` on your own data: the worked CSV example (recipes/smollm2-csv-example.yml)
trains and is scored end to end, and evaluation reads its split through the same loader as
training, so it never scores the rows the model trained on unless asked (`SPLIT=train`)."""

import json
import shutil

import pytest
import yaml

from datasets_fmt.sources import load_data
from datasets_fmt.spec import DataSpec
from eval.pipeline import EvalRequest, Evaluation, evaluate, seeded_subset
from eval.pipeline import main as evaluate_main
from tests.conftest import DEMO_DATA
from tests.eval.conftest import train_in_training_env

FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def ids_in(path, key="id"):
    return [json.loads(line)[key] for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory, tiny_llama):
    """The CSV example trained two steps on the tiny Llama by scripts/train.py in the training
    environment, as `make train RECIPE=smollm2-csv-example` runs it."""
    run_dir = tmp_path_factory.mktemp("csv-example") / "run"
    train_in_training_env(
        "smollm2-csv-example", run_dir, f"base_model={tiny_llama}", "max_steps=2", "save_steps=1",
        "eval_steps=1", "logging_steps=1", "evaluation.limit=3", "evaluation.max_new_tokens=8", "evaluation.backend=hf",
    )  # fmt: skip
    return run_dir


@pytest.mark.slow
def test_the_csv_example_trains_and_is_scored_on_its_held_out_split(csv_run):
    assert evaluate_main(["smollm2-csv-example", "--run-dir", str(csv_run)]) == 0
    run = yaml.safe_load((csv_run / "run.yml").read_text())
    test_side = load_data(DataSpec.from_block(run["data"]), "test")
    scored = ids_in(csv_run / "eval" / "predictions.jsonl")
    assert scored == [ex.id for ex in seeded_subset(test_side.examples, 3)]  # evaluation.limit=3
    assert not set(scored) & set(ids_in(csv_run / "data" / "train.jsonl"))
    metrics = json.loads((csv_run / "eval" / "metrics.json").read_text())
    assert metrics["n"] == 3 and metrics["generation"]["backend"] == "hf"
    assert "chats.csv: a 0.1 share, seed 0" in metrics["provenance"]["dataset"]
    assert "on chats.csv (32 records)" in (csv_run / "adapter" / "README.md").read_text()


def use_data(run_dir, **data):
    run = yaml.safe_load((run_dir / "run.yml").read_text())
    run["data"].update(data)
    run["evaluation"]["limit"] = None  # the whole split
    (run_dir / "run.yml").write_text(yaml.safe_dump(run))
    return run


def test_evaluation_never_scores_the_training_file_unless_asked(tiny_run, caplog):
    train_file = DEMO_DATA / "train.jsonl"
    use_data(tiny_run, location=str(train_file))
    assert evaluate(EvalRequest("tiny", run_dir=tiny_run, backend="hf", limit=3)) == 2
    assert (
        f"{train_file}: one file without named splits is the train split; the 'test' split cannot"
        in caplog.text
    )
    asked = Evaluation(EvalRequest("tiny", run_dir=tiny_run, backend="hf", limit=3, split="train"))
    asked.setup()  # SPLIT=train: scoring the training rows on purpose
    assert {ex.id for ex in asked.examples} <= set(ids_in(train_file, "fname")) and len(asked.examples) == 3


def test_a_cut_file_is_scored_on_its_held_out_side_only(tiny_run):
    use_data(tiny_run, location=str(DEMO_DATA / "train.jsonl"), split_fractions=FRACTIONS, split_seed=0)
    sides = {}
    for split in FRACTIONS:
        evaluation = Evaluation(EvalRequest("tiny", run_dir=tiny_run, backend="hf", split=split))
        evaluation.setup()
        sides[split] = {ex.id for ex in evaluation.examples}
    assert sum(map(len, sides.values())) == len(ids_in(DEMO_DATA / "train.jsonl", "fname"))
    assert not sides["test"] & sides["train"] and not sides["validation"] & sides["train"]


def test_a_file_changed_since_training_is_not_scored(tiny_run, tmp_path, caplog):
    data_file = tmp_path / "chats.jsonl"
    shutil.copy(DEMO_DATA / "train.jsonl", data_file)
    block = use_data(tiny_run, location=str(data_file), split_fractions=FRACTIONS, split_seed=0)["data"]
    run = yaml.safe_load((tiny_run / "run.yml").read_text())
    run["data_split"] = load_data(DataSpec.from_block(block), "train").split_record  # as training records it
    (tiny_run / "run.yml").write_text(yaml.safe_dump(run))
    Evaluation(EvalRequest("tiny", run_dir=tiny_run, backend="hf")).setup()  # unchanged: accepted
    lines = data_file.read_text().splitlines()
    data_file.write_text("\n".join(lines[1:] + lines[:1]) + "\n")  # the same records, another order
    assert evaluate(EvalRequest("tiny", run_dir=tiny_run, backend="hf", limit=3)) == 2
    assert "it no longer gives the split(s) training recorded in run.yml" in caplog.text

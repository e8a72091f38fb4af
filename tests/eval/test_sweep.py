"""`make sweep` in small: two learning rates on the tiny Llama, each a real run trained by the
training environment, every checkpoint scored, one report; a run again skips what is done,
and a sweep killed during a point continues with that point only."""

import shutil
import sys

import pytest
import yaml

from eval.sweep import Sweep, SweepRequest
from tests.conftest import DEMO_DATA
from tests.eval.conftest import TRAIN_PY


@pytest.mark.slow
def test_a_sweep_trains_scores_reports_and_resumes(tmp_path, tiny_llama):
    if not TRAIN_PY.exists():
        pytest.skip("the training environment .venv/train is missing: run `make env-train`")
    request = SweepRequest(
        "smollm2-dialogsum",
        "learning_rate=1e-4,1e-3",
        out_dir=tmp_path / "sweep",
        overrides=(
            f"base_model={tiny_llama}", "max_steps=2", "save_steps=1", "eval_steps=1",
            "evaluation.max_new_tokens=8",
        ),
        data_dir=str(DEMO_DATA),
        limit=3,
        backend="hf",
        train_python=str(TRAIN_PY),
        eval_python=sys.executable,
    )  # fmt: skip
    sweep = Sweep(request)
    summary = sweep.run()
    assert [p["point"] for p in summary["points"]] == ["learning_rate-1e-4", "learning_rate-1e-3"]
    for point in summary["points"]:
        steps = [c["step"] for c in point["checkpoints"]]
        assert steps == [0, 1, 2] and point["best_checkpoint"] in ("checkpoint-1", "checkpoint-2")
        assert all(c["eval_loss"] is not None for c in point["checkpoints"][1:])
    runs = {p.name: sweep.run_dir(p) for p in sweep.points}
    assert "base: 3 of 3 generations taken from" in (runs["learning_rate-1e-3"] / "score.log").read_text()
    assert yaml.safe_load((runs["learning_rate-1e-3"] / "config.yml").read_text())["learning_rate"] == 0.001
    best = max(summary["points"], key=lambda p: p["best_scores"]["rouge1"]["mean"])
    assert summary["best"]["point"] == best["point"]
    report = (tmp_path / "sweep" / "sweep.md").read_text()
    assert "| learning_rate | step | ROUGE-1 |" in report and "(best)" in report

    logs = {name: (run / "train.log").read_text() for name, run in runs.items()}
    Sweep(request).run()  # everything done: nothing is trained again
    assert {name: (run / "train.log").read_text() for name, run in runs.items()} == logs

    # killed while training the second point: it alone is trained (resumed) and scored again
    (runs["learning_rate-1e-3"] / "TRAINED").unlink()
    shutil.rmtree(runs["learning_rate-1e-3"] / "eval-checkpoints")
    assert Sweep(request).run()["best"]["point"] in runs
    assert (runs["learning_rate-1e-4"] / "train.log").read_text() == logs["learning_rate-1e-4"]
    assert len((runs["learning_rate-1e-3"] / "train.log").read_text()) > len(logs["learning_rate-1e-3"])
    assert (runs["learning_rate-1e-3"] / "eval-checkpoints" / "scores.json").exists()

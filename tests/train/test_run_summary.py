"""The figures a finished run reports in run.yml, read from the trainer's log and from the
ranks' report (training/ranks.py)."""

import json

import pytest

from training.run_summary import one_line, summarize_training


def write_state(run_dir, step, log_history):
    checkpoint = run_dir / "adapter" / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text(
        json.dumps({"global_step": step, "log_history": log_history})
    )


def write_ranks(run_dir, peaks):
    ranks = [
        {"rank": i, "host": f"node-{i // 2}", "device": f"cuda:{i % 2}", "peak_gib": p}
        for i, p in enumerate(peaks)
    ]
    (run_dir / "adapter" / "ranks.json").write_text(json.dumps({"world_size": len(peaks), "ranks": ranks}))
    return ranks


def axolotl_log(step, loss, trainable, total, rate=None, peak=None):
    entry = {"step": step, "loss": loss, "tokens/trainable": trainable, "tokens/total": total}
    if rate is not None:
        entry["tokens/train_per_sec_per_gpu"] = rate
    if peak is not None:
        entry["memory/max_allocated (GiB)"] = peak
    return entry


def test_axolotl_log_gives_step_time_throughput_and_every_ranks_peak(tmp_path):
    # two GPUs; each step trains 1,000 tokens of 4,000 positions; 250 trained tokens/s per GPU
    # after start-up means 2 s per step
    write_state(tmp_path, 2, [{"step": 1, "loss": 9.0}])  # an older checkpoint is ignored
    logs = [
        axolotl_log(1, 12.0, 1000, 4000, peak=9.0),
        axolotl_log(2, 11.0, 2000, 8000, rate=250.0, peak=9.5),
        axolotl_log(4, 10.0, 4000, 16000, rate=250.0, peak=9.4),
        {"step": 4, "eval_loss": 10.5},
    ]
    write_state(tmp_path, 10, logs)
    ranks = write_ranks(tmp_path, [9.5, 11.25])  # the logged peak (rank 0's) is not the largest
    summary = summarize_training(tmp_path, processes=2)
    assert summary == {
        "steps": 10,
        "processes": 2,
        "loss_first": 12.0,
        "loss_last": 10.0,
        "seconds_per_step": 2.0,
        "trained_tokens_per_second": 500,
        "positions_per_second": 2000,
        "world_size": 2,
        "ranks": ranks,
        "peak_gib_max": 11.25,
    }
    assert one_line(summary) == (
        "10 steps, loss 12.000 -> 10.000, 2.0 s/step, 2,000 token positions/s, "
        "500 trained tokens/s, peak 11.25 GiB (the largest of 2 GPUs)"
    )


def test_throughput_counts_the_processes_the_trainer_had_not_those_asked_for(tmp_path):
    logs = [axolotl_log(1, 12.0, 1000, 4000), axolotl_log(2, 11.0, 2000, 8000, rate=250.0)]
    write_state(tmp_path, 2, logs)
    (tmp_path / "adapter" / "ranks.json").write_text(
        json.dumps({"world_size": 1, "ranks": [{"rank": 0, "host": "h", "device": "cpu"}]})
    )
    summary = summarize_training(tmp_path, processes=2)
    assert summary["processes"] == 2 and summary["world_size"] == 1
    assert summary["trained_tokens_per_second"] == 250 and summary["seconds_per_step"] == 4.0
    assert "peak_gib_max" not in summary  # no GPU, no peak


def test_seq2seq_log_gives_its_own_step_time(tmp_path):
    logs = [
        {"step": 1, "loss": 3.0, "memory/max_allocated (GiB)": 20.0},
        {"step": 2, "loss": 2.5, "seconds_per_step": 0.5, "memory/max_allocated (GiB)": 21.0},
        {"step": 3, "loss": 2.0, "seconds_per_step": 0.7, "memory/max_allocated (GiB)": 21.0},
    ]
    write_state(tmp_path, 3, logs)
    summary = summarize_training(tmp_path, processes=1)
    assert summary["seconds_per_step"] == pytest.approx(0.6)
    assert "positions_per_second" not in summary and "world_size" not in summary  # no ranks.json


def test_a_run_without_checkpoints_has_no_summary(tmp_path):
    assert summarize_training(tmp_path, processes=1) is None

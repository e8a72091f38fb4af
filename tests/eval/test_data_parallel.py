"""Evaluation over several GPUs (eval/data_parallel.py): one engine replica per GPU, each on
an interleaved share of the items, merged in item order. On the CPU the replicas share the
cores: these tests check the split, the merge, the resume and the report, not the speed."""

import json

from eval.data_parallel import merged_timing, shard_file, shard_of
from eval.pipeline import EvalRequest, Evaluation
from eval.pipeline import main as evaluate_main

ARGS = ["--adapter-mode", "lora", "--deterministic"]


def predictions(run_dir):
    return [json.loads(line) for line in (run_dir / "eval" / "predictions.jsonl").read_text().splitlines()]


def test_the_shares_cover_every_item_once():
    items = list(range(11))
    shares = [shard_of(items, k, 3) for k in range(3)]
    assert sorted(i for share in shares for i in share) == items
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_the_report_sums_the_replicas_rates_and_items():
    one = {
        "throughput": {"base": {"items": 3, "prompts_per_s": 1.5, "output_tokens_per_s": 20.0}},
        "engine_start_seconds": {"base": 9.0},
        "engine_starts": 1,
    }
    two = {
        "throughput": {"base": {"items": 2, "prompts_per_s": 1.0, "output_tokens_per_s": 10.0}},
        "engine_start_seconds": {"base": 11.0},
        "engine_starts": 1,
    }
    t = merged_timing([one, two], wall=4.0)
    assert t["throughput"]["base"] == {"items": 5, "prompts_per_s": 2.5, "output_tokens_per_s": 30.0}
    assert t["engine_start_seconds"] == {"base": 11.0} and t["engine_starts"] == 2
    assert t["data_parallel_replicas"] == 2


def test_two_replicas_give_one_engines_texts_and_keep_what_a_killed_run_wrote(tiny_run):
    assert evaluate_main(["tiny", "--run-dir", str(tiny_run), *ARGS]) == 0
    alone = predictions(tiny_run)
    # a killed two-replica run: replica 1 had written one item; it must be kept, not regenerated
    (tiny_run / "eval" / "predictions.jsonl").unlink()
    for partial in (tiny_run / "eval").glob("*.partial.jsonl"):
        partial.unlink()
    kept = {"id": alone[1]["id"], "text": "written before the kill", "output_tokens": 4, "stopped": True}
    shard_file(tiny_run / "eval", "finetuned", 1, 2).write_text(json.dumps(kept) + "\n")

    assert evaluate_main(["tiny", "--run-dir", str(tiny_run), *ARGS, "--gpus", "2"]) == 0
    both = predictions(tiny_run)
    assert [r["id"] for r in both] == [r["id"] for r in alone]
    assert both[1]["finetuned"]["text"] == "written before the kill"
    for a, b in zip(alone, both, strict=True):
        assert a["base"] == b["base"]
        if a["id"] != kept["id"]:
            assert a["finetuned"] == b["finetuned"]
    generation = json.loads((tiny_run / "eval" / "metrics.json").read_text())["generation"]
    assert generation["data_parallel_replicas"] == 2
    assert generation["throughput"]["base"]["items"] == len(alone)
    assert generation["throughput"]["finetuned"]["items"] == len(alone) - 1
    assert not list((tiny_run / "eval").glob("*.shard-*")) and not (tiny_run / "eval" / "shards").exists()


def test_the_merged_model_is_made_once_before_the_replicas_start(tiny_run):
    """Merged mode: the parent merges; the replicas find the copy instead of each writing it at once."""
    evaluation = Evaluation(EvalRequest("tiny", run_dir=tiny_run, adapter_mode="merged", gpus=2))
    evaluation.setup()
    assert not (evaluation.merged_dir / "merge_check.json").exists()
    evaluation.prepare_for_replicas()
    assert (evaluation.merged_dir / "merge_check.json").exists()

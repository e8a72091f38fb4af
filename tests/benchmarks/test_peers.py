"""The training benchmark's peers (benchmarks/peers.py): Axolotl's stock QLoRA example changed
only where its row says, Unsloth fed the recipe's rows with the loss on the summaries alone,
and both timed on CPU beside each other by the same meter."""

import json
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import yaml

from benchmarks import peers
from benchmarks.train_throughput import resolved_recipe
from benchmarks.unsloth_qlora import peer_settings
from tests.conftest import REPO

# what a benchmark run must change in the stock example; every other key stays as shipped
CHANGED = {
    "base_model",
    "datasets",
    "sequence_len",
    "max_steps",
    "output_dir",
    "dataset_prepared_path",
    "plugins",
}


def example(tmp_path, flash_attn):
    rows = (tmp_path / "train.jsonl", "datasets_fmt.axolotl_chat")
    return peers.axolotl_example_config(tmp_path / "model", rows, 2048, 12, tmp_path, flash_attn, cuda=True)


def test_the_axolotl_example_keeps_every_setting_but_model_data_length_and_steps(tmp_path):
    stock = yaml.safe_load(peers.AXOLOTL_EXAMPLE.read_text())
    config, changes = example(tmp_path, flash_attn=True)
    assert {k for k in config if config[k] != stock.get(k)} == CHANGED
    assert config["plugins"] == ["benchmarks.train_meter.BenchMeter"]
    assert config["datasets"] == [
        {"path": str(tmp_path / "train.jsonl"), "ds_type": "json", "type": "datasets_fmt.axolotl_chat"}
    ]
    assert not any("attention" in c for c in changes)


def test_without_flash_attn_the_example_takes_sdpa_and_says_so(tmp_path):
    config, changes = example(tmp_path, flash_attn=False)
    assert config["attn_implementation"] == "sdpa"
    assert "attention: sdpa (flash-attn not installed)" in changes


def test_unsloth_rows_put_the_loss_on_the_summary_and_its_end_token(llama3_tokenizer_dir, shared_data):
    from transformers import AutoTokenizer

    from benchmarks.unsloth_qlora import tokenized_rows
    from datasets_fmt.sources import load_examples

    tok = AutoTokenizer.from_pretrained(llama3_tokenizer_dir)
    rows = tokenized_rows(tok, shared_data, 2048, 5, seed=42)
    summaries = {ex.target for ex in load_examples("dialogsum", "train", str(shared_data)).examples}
    for row in rows:
        trained = tok.decode([i for i, m in zip(row["input_ids"], row["completion_mask"], strict=True) if m])
        assert trained.endswith("<|eot_id|>") and trained.removesuffix("<|eot_id|>") in summaries


@pytest.mark.parametrize("steps", [10, 50, 100, 1000])
@pytest.mark.parametrize("warmup", [{}, {"warmup_ratio": None}, {"warmup_ratio": None, "warmup_steps": 5}])
def test_the_unsloth_peer_warms_up_for_the_steps_axolotl_gives_the_recipe(steps, warmup):
    from axolotl.core.builders.base import TrainerBuilderBase
    from axolotl.utils.dict import DictDefault

    recipe = {**resolved_recipe(), **warmup}
    axolotl_args: dict = {}
    builder = SimpleNamespace(cfg=DictDefault(recipe))
    TrainerBuilderBase._configure_warmup_and_logging(builder, steps, axolotl_args)
    assert peer_settings(recipe, steps)["warmup_steps"] == axolotl_args["warmup_steps"]


def test_both_peers_train_on_cpu_and_fill_the_table(tmp_path, tiny_llama3, shared_data):
    if not (peers.PEERS_DIR / "unsloth").is_dir():
        pytest.skip(f"Unsloth not in {peers.PEERS_DIR}: run `make env-peers` (make test does)")
    # a copy: the benchmark names the recipe's pad token in it
    shutil.copytree(tiny_llama3, tmp_path / "model")
    out = tmp_path / "bench"
    (tmp_path / "data").symlink_to(shared_data)
    # relative folders, as a user types them: the peers run from their own run folders
    cmd = [sys.executable, "-m", "benchmarks.train_throughput", "all", "--model", "model"]
    cmd += [
        "--data-dir",
        "data",
        "--out",
        "bench",
        "--steps",
        "3",
        "--warmup",
        "1",
        "--skip-baseline",
    ]
    cmd += ["--peer", "axolotl_example", "--peer", "unsloth", "--timeout", "600"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1300)
    assert done.returncode == 0, done.stderr[-3000:]
    for name in peers.PEERS:
        record = json.loads((out / f"peer_{name}.json").read_text())
        assert record["rc"] == 0, (out / f"peer_{name}.log").read_text()[-3000:]
        assert len(record["steps"]) == 3 and all(s["real"] > 0 for s in record["steps"])
        # the prompts are masked: the loss is on the summaries, a small share of the tokens
        assert 0 < record["first_batch_trained"] < 0.5 * record["first_batch_real"]
    header, _, *rows = done.stdout.strip().splitlines()[-4:]
    assert "| x Unsloth | x Axolotl example |" in header
    assert {r.split(" | ")[0].strip("| ") for r in rows} == set(peers.PEERS)
    assert all("failed" not in r for r in rows)

"""Every recipe trains two real Axolotl steps on CPU, its base model swapped by an override
(not an edit) for a tiny random model of the same family, so its prompt format, masking,
adapter and trainer settings all run."""

import json
import math

import pytest
import yaml

from tests.conftest import DEMO_DATA
from training import runner as train

COMMON = [
    "max_steps=2",
    "save_steps=1",
    "eval_steps=1",
    "logging_steps=1",
    "micro_batch_size=1",
    "gradient_accumulation_steps=1",
]
DIALOGSUM: list[str] = []  # the demo corpus has a validation split, as DialogSum does
DOLLY_OVERRIDES = ["special_tokens.pad_token=<|endoftext|>"]  # Llama-2's <unk> is not in the tiny vocab

CASES = {  # recipe: (tiny model fixture, extra overrides, data)
    "smollm2-dialogsum-qlora": ("tiny_llama", DIALOGSUM, "demo"),
    "llama3-dialogsum": ("tiny_llama3", DIALOGSUM, "demo"),
    "phi2-dialogsum": ("tiny_phi", DIALOGSUM, "demo"),
    "llama2-dolly-lora": ("tiny_llama", DOLLY_OVERRIDES, "dolly"),
    "llama2-dolly-qlora": ("tiny_llama", DOLLY_OVERRIDES, "dolly"),
    "llama2-dolly-full": ("tiny_llama", DOLLY_OVERRIDES, "dolly"),
    "flan-t5-samsum": ("tiny_t5", [], "samsum"),
    "flan-t5-xxl-samsum": ("tiny_t5", [], "samsum"),  # int8 base: bitsandbytes 8-bit on CPU
}


@pytest.fixture(scope="module")
def dolly_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dolly")
    rows = [
        {
            "instruction": f"Question {i}: what is {i} plus {i}?",
            "context": "" if i % 2 else f"We add {i} and {i}.",
            "response": f"{2 * i}.",
            "category": "open_qa",
        }
        for i in range(40)
    ]
    (folder / "databricks-dolly-15k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def samsum_dir(tmp_path_factory):
    """SAMSum-shaped data (JSON arrays, \\r\\n turns) from the demo dialogues."""
    from datasets_fmt.sources import load_examples

    folder = tmp_path_factory.mktemp("samsum")
    for split, name in (("train", "train.json"), ("test", "val.json")):
        rows = [
            {"id": ex.id, "dialogue": ex.source.replace("\n", "\r\n"), "summary": ex.target}
            for ex in load_examples("dialogsum", split, DEMO_DATA).examples[:20]
        ]
        (folder / name).write_text(json.dumps(rows))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("recipe", sorted(CASES))
def test_recipe_trains_two_steps_on_a_tiny_model(recipe, request, tmp_path, dolly_dir, samsum_dir):
    model_fixture, extra, data_kind = CASES[recipe]
    model = request.getfixturevalue(model_fixture)
    data = {"demo": DEMO_DATA, "dolly": dolly_dir, "samsum": samsum_dir}[data_kind]
    run_dir = tmp_path / "run"
    rc = train.main(
        [recipe, f"base_model={model}", *COMMON, *extra, "--data-dir", str(data), "--run-dir", str(run_dir)]
    )
    assert rc == 0
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    weights = "adapter_model.safetensors" if config.get("adapter") else "model.safetensors"
    assert (run_dir / "adapter" / weights).exists()
    state = json.loads(sorted((run_dir / "adapter").glob("checkpoint-*/trainer_state.json"))[-1].read_text())
    assert state["global_step"] == 2
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert len(losses) == 2 and all(math.isfinite(x) and x > 0 for x in losses)
    summary = yaml.safe_load((run_dir / "run.yml").read_text())["training_summary"]
    assert summary["steps"] == 2 and summary["loss_last"] == losses[-1] and summary["seconds_per_step"] > 0
    assert summary["world_size"] == 1 and [r["device"] for r in summary["ranks"]] == [
        "cpu"
    ]  # training/ranks.py
    if config.get("adapter") == "qlora":
        assert (
            config["load_in_4bit"] is True
            and config["bnb_config_kwargs"]["bnb_4bit_use_double_quant"] is True
        )

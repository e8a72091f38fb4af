"""A real Axolotl run on CPU: a tiny random Llama, LoRA, two steps, through the runner scripts/train.py calls."""

import yaml
from transformers import AutoTokenizer

from datasets_fmt.prompts import get_format
from datasets_fmt.sources import load_examples
from tests.conftest import DEMO_DATA
from training import runner as train


def tiny_args(model, run_dir, *overrides: str, data=DEMO_DATA) -> list[str]:
    return [
        "smollm2-dialogsum",
        f"base_model={model}",
        *overrides,
        "--data-dir",
        str(data),
        "--run-dir",
        str(run_dir),
    ]


def test_tiny_lora_training_run_end_to_end(tmp_path, tiny_llama):
    run_dir = tmp_path / "run"
    args = tiny_args(tiny_llama, run_dir)
    assert train.main(tiny_args(tiny_llama, run_dir, "max_steps=2", "save_steps=1", "logging_steps=1")) == 0
    assert (run_dir / "adapter" / "adapter_model.safetensors").exists()
    assert (run_dir / "TRAINED").exists()
    config = yaml.safe_load((run_dir / "config.yml").read_text())
    assert config["bf16"] is False and config["datasets"][0]["type"] == "datasets_fmt.axolotl_chat"
    assert config["plugins"] == ["training.ranks.RankReportPlugin"]  # no packing: no packed attention
    run = yaml.safe_load((run_dir / "run.yml").read_text())
    assert run["data_check"]["train"]["records"] >= 200
    # the card left beside the adapter names the Hub dataset, not the trainer's data file
    card = (run_dir / "adapter" / "README.md").read_text()
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["datasets"] == ["knkarthick/dialogsum"] and "base_model" not in front  # a local folder
    assert "train.jsonl" not in card and "Not evaluated yet" in card
    # --check on a finished run leaves its record alone
    assert train.main([*args, "--check"]) == 0
    assert "train_seconds" in yaml.safe_load((run_dir / "run.yml").read_text())
    # A finished run is not silently overwritten.
    assert train.main(args) == 2


def test_check_stops_before_training_on_bad_data(tmp_path, tiny_llama, caplog):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"fname": "a", "dialogue": "x"}\n')
    assert train.main([*tiny_args(tiny_llama, tmp_path / "run", data=bad), "--check"]) == 2
    assert f"{bad}, line 1, field 'summary': missing" in caplog.text


def test_check_reports_how_many_dialogues_will_be_truncated(tmp_path, tiny_llama):
    run_dir = tmp_path / "run"
    assert train.main([*tiny_args(tiny_llama, run_dir, "sequence_len=128"), "--check"]) == 0
    check = yaml.safe_load((run_dir / "run.yml").read_text())["data_check"]["train"]
    # counted independently: the records whose whole prompt + summary is over 128 tokens
    fmt = get_format("chat", AutoTokenizer.from_pretrained(tiny_llama))
    lengths = [
        len(fmt.encode_train(ex, 10**6).input_ids)
        for ex in load_examples("dialogsum", "train", DEMO_DATA).examples
    ]
    assert check["records"] == len(lengths) and check["dropped_summary_too_long"] == 0
    assert check["truncated_dialogues"] == sum(n > 128 for n in lengths) > 0
    assert check["max_tokens_cut"] == max(lengths) - 128
    assert not (run_dir / "adapter").exists()  # --check trains nothing

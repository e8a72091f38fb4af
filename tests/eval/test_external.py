"""`make eval ADAPTER=... [MODEL=...]`: weights trained elsewhere are evaluated under a
recipe's data, prompt and settings, with no training run, and their folder is left as it was."""

import json

import pytest
import yaml

from eval.external import ExternalError, external_run_dir, prepare_external_run
from eval.pipeline import main as evaluate_main
from tests.conftest import DEMO_DATA


def listing(folder):
    return {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_an_adapter_from_elsewhere_is_evaluated_like_a_run(tmp_path, tiny_adapter, tiny_llama):
    before = listing(tiny_adapter)
    run_dir = tmp_path / "external"
    args = ["smollm2-dialogsum", "--adapter", str(tiny_adapter), "--run-dir", str(run_dir)]
    args += ["--data-dir", str(DEMO_DATA), "--backend", "hf", "--limit", "3", "evaluation.max_new_tokens=8"]
    assert evaluate_main(args) == 0
    run = yaml.safe_load((run_dir / "run.yml").read_text())
    assert run["base_model"] == str(tiny_llama)  # from the adapter's adapter_config.json
    assert run["external"] == {"adapter": str(tiny_adapter), "model": None}
    assert run["evaluation"]["max_new_tokens"] == 8
    rows = [json.loads(line) for line in (run_dir / "eval" / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and [r["finetuned"]["text"] for r in rows] != [r["base"]["text"] for r in rows]
    assert (run_dir / "eval" / "README.md").exists()  # the card beside the report
    assert listing(tiny_adapter) == before  # nothing written into the adapter's own folder


def test_weights_that_cannot_be_evaluated_are_named(tmp_path):
    with pytest.raises(ExternalError, match="give ADAPTER="):
        prepare_external_run("smollm2-dialogsum", None, None)
    with pytest.raises(ExternalError, match="'no/such/thing' is neither a folder nor a Hub id"):
        prepare_external_run("smollm2-dialogsum", "no/such/thing", None)
    with pytest.raises(ExternalError, match="has no adapter_config.json"):
        prepare_external_run("smollm2-dialogsum", str(tmp_path), None)


def test_the_run_is_named_after_the_weights_and_is_never_hidden():
    assert external_run_dir(".cache/models/M-lora-r16", None).name == "cache_models_M-lora-r16"
    assert external_run_dir("./M-lora-r16", "someone/base-8b").name == "M-lora-r16+someone_base-8b"

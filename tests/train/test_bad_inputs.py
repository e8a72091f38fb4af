"""Every bad input in tests/bad_inputs/ fails early with its exact, actionable error."""

from pathlib import Path

import pytest
import yaml
from recipe_config import RecipeError, check_against_model, resolve, validate

from datasets_fmt.records import DataError
from datasets_fmt.sources import load_examples

CASES_DIR = Path(__file__).resolve().parent.parent / "bad_inputs"
CASES = yaml.safe_load((CASES_DIR / "cases.yml").read_text())


@pytest.mark.parametrize(("name", "expected"), sorted(CASES["data"].items()))
def test_bad_data_file(name, expected):
    corpus = "samsum" if name.endswith(".json") else "dialogsum"
    with pytest.raises(DataError) as err:
        load_examples(corpus, "train", CASES_DIR / name)
    assert expected in str(err.value)
    assert str(CASES_DIR / name) in str(err.value)


@pytest.mark.parametrize(("name", "case"), sorted(CASES["recipe"].items()))
def test_bad_recipe(name, case, smollm2_dir):
    overrides, expected = case
    with pytest.raises(RecipeError) as err:
        config, _, source = resolve("smollm2-dialogsum", overrides)
        config["datasets"] = [{"path": "x.jsonl", "ds_type": "json", "type": "datasets_fmt.axolotl_chat"}]
        check_against_model(config, source, cuda_bf16=None)
        validate(config, source)
    assert expected in str(err.value)


def test_bf16_on_a_gpu_without_it_is_refused():
    config, _, source = resolve("smollm2-dialogsum", ["bf16=true"])
    with pytest.raises(RecipeError, match="this GPU has no bf16: set bf16: false and fp16: true"):
        check_against_model(config, source, cuda_bf16=False)


@pytest.mark.parametrize(("name", "expected"), sorted(CASES["skipped"].items()))
def test_unusable_records_are_skipped_with_a_counted_warning(name, expected, caplog):
    loaded = load_examples("dialogsum", "train", CASES_DIR / name)
    assert [ex.id for ex in loaded.examples] == ["a"]
    assert expected.replace("TESTS", str(CASES_DIR)) in caplog.text

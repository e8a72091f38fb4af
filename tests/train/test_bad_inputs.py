"""Every bad input in tests/bad_inputs/ fails early, through the entry point a user calls
(`make check` runs scripts/train.py --check), with the exact one-line error it must give:
the file, record or key, and what to do. Never a traceback."""

import logging
import runpy
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml

from datasets_fmt.sources import load_examples
from training.checks import check_against_model
from training.paths import RECIPES, REPO, models_dir
from training.recipe import RecipeError, resolve

CASES_DIR = Path(__file__).resolve().parent.parent / "bad_inputs"
CASES = yaml.safe_load((CASES_DIR / "cases.yml").read_text())


def expand(text: str, **extra) -> str:
    return text.format(cases=CASES_DIR, recipes=RECIPES, models=models_dir(), **extra)


def train_entry(argv: list[str]) -> int:
    """scripts/train.py as a user's command line runs it (in this process): its exit code."""
    with mock.patch.object(sys, "argv", ["scripts/train.py", *argv]), pytest.raises(SystemExit) as done:
        runpy.run_path(str(REPO / "scripts" / "train.py"), run_name="__main__")
    return done.value.code


def check_error(args: list[str], tmp_path, caplog) -> str:
    """Run the check the way `make check` does; return the one error line it logged."""
    caplog.clear()
    with caplog.at_level(logging.INFO):
        rc = train_entry([*args, "--check", "--run-dir", str(tmp_path / "run")])
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert rc == 2, f"accepted: {args}"
    assert len(errors) == 1 and "\n" not in errors[0], errors
    return errors[0]


@pytest.mark.parametrize(("name", "case"), sorted(CASES["data"].items()))
def test_bad_data_file(name, case, tmp_path, caplog, smollm2_dir):
    case = case if isinstance(case, dict) else {"error": case}
    file = case.get("file", name)
    corpus = ["data.corpus=samsum"] if file.endswith(".json") else []
    recipe = case.get("recipe", "smollm2-dialogsum")
    args = [recipe, *corpus, *case.get("overrides", []), "--data-dir", str(CASES_DIR / file)]
    assert check_error(args, tmp_path, caplog) == expand(case["error"])


@pytest.mark.parametrize(("name", "case"), sorted(CASES["recipe"].items()))
def test_bad_recipe(name, case, tmp_path, caplog, smollm2_dir):
    recipe = case["recipe"] if "/" not in case["recipe"] else str(CASES_DIR / case["recipe"])
    args = [recipe, *case.get("overrides", []), "--data-dir", str(CASES_DIR.parent.parent / "data" / "demo")]
    assert check_error(args, tmp_path, caplog) == expand(case["error"])


def test_chat_format_without_a_chat_template(tmp_path, caplog, tiny_phi):
    args = [
        "smollm2-dialogsum",
        f"base_model={tiny_phi}",
        "--data-dir",
        str(CASES_DIR / "byte_order_mark.jsonl"),
    ]
    assert check_error(args, tmp_path, caplog) == expand(CASES["chat_without_template"], model=tiny_phi)


def test_finished_run_is_not_overwritten(tmp_path, caplog, smollm2_dir):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "TRAINED").write_text("finished\n")
    caplog.clear()
    rc = train_entry(
        [
            "smollm2-dialogsum",
            "--data-dir",
            str(CASES_DIR / "byte_order_mark.jsonl"),
            "--run-dir",
            str(run_dir),
        ]
    )
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert rc == 2 and errors == [expand(CASES["finished_run"], run=run_dir)]
    assert (run_dir / "TRAINED").read_text() == "finished\n"


def test_bf16_on_a_gpu_without_it_is_refused():
    # A GPU-only condition: the check is called with what the GPU reports.
    resolved = resolve("smollm2-dialogsum", ["bf16=true"])
    with pytest.raises(RecipeError) as err:
        check_against_model(resolved, cuda_bf16=False)
    assert str(err.value) == expand(CASES["bf16_without_gpu_support"])


@pytest.mark.parametrize(("name", "expected"), sorted(CASES["skipped"].items()))
def test_unusable_records_are_skipped_with_a_counted_warning(name, expected, caplog):
    loaded = load_examples("dialogsum", "train", CASES_DIR / name)
    assert [ex.id for ex in loaded.examples] == ["a"]
    assert expand(expected) in caplog.text


@pytest.mark.parametrize(
    ("name", "corpus"), [("byte_order_mark.jsonl", "dialogsum"), ("samsum_byte_order_mark.json", "samsum")]
)
def test_a_byte_order_mark_is_read_not_rejected(name, corpus):
    loaded = load_examples(corpus, "train", CASES_DIR / name)
    assert len(loaded.examples) == 1 and loaded.examples[0].target == "They greet."

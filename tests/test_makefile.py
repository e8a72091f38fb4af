"""The Makefile's own promises: `make help` names every target, and a target that reads no
recipe keys refuses OVERRIDES instead of ignoring them."""

import re
import subprocess

import pytest

from tests.conftest import REPO

MAKEFILE = (REPO / "Makefile").read_text()
PHONY = re.search(r"^\.PHONY:(.*)$", MAKEFILE, re.M).group(1).split()
TAKE_OVERRIDES = {"train", "check", "sweep", "eval", "eval-checkpoints", "serve"}
# set-up and tooling targets, named in help but with nothing to override
NO_RECIPE = {
    "help",
    "test",
    "setup",
    "env-train",
    "env-eval",
    "env-peers",
    "model",
    "lint",
    "format",
    "bundle",
    "bundle-install",
}


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_help_names_every_target():
    shown = subprocess.run(["make", "help"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert [t for t in PHONY if not re.search(rf"(^|[\s/]){re.escape(t)}(\s|$)", shown)] == []


@pytest.mark.parametrize("target", sorted(set(PHONY) - TAKE_OVERRIDES - NO_RECIPE))
def test_targets_that_read_no_recipe_keys_refuse_overrides(target):
    done = make(target, "OVERRIDES=max_steps=3", "FILE=x.jsonl")
    assert done.returncode != 0 and f"make {target} reads no OVERRIDES" in done.stderr


@pytest.mark.parametrize(
    ("target", "override"),
    [
        ("eval", "evaluation.max_new_tokens=64"),
        ("eval-checkpoints", "evaluation.max_new_tokens=64"),
        ("serve", "evaluation.engine_args.max_num_seqs=4"),
    ],
)
def test_evaluating_targets_pass_overrides_on(target, override):
    done = make(target, f"OVERRIDES={override}")
    assert done.returncode == 0 and override in done.stdout


@pytest.mark.parametrize(
    ("value", "flag"), [("1", "--deterministic "), ("batch-invariant", "--deterministic batch-invariant ")]
)
def test_deterministic_passes_the_mode_it_names(value, flag):
    done = make("eval", f"DETERMINISTIC={value}")
    assert done.returncode == 0 and flag in done.stdout + " "


@pytest.mark.parametrize("target", ["serve", "bench-serve", "bench-serve-faults", "publish-hub"])
def test_merged_passes_merged_on(target):
    extra = {"bench-serve": ["DATA_DIR=data/demo"], "publish-hub": ["REPO_ID=me/x"]}.get(target, [])
    assert "--merged" in make(target, "MERGED=1", *extra).stdout
    assert "--merged" not in make(target, *extra).stdout


def test_bench_serve_passes_the_split_on():
    assert "--split train" in make("bench-serve", "DATA_DIR=data/demo", "SPLIT=train").stdout


def test_bench_serve_faults_passes_the_load_on():
    assert "--in-flight 50" in make("bench-serve-faults", "IN_FLIGHT=50").stdout

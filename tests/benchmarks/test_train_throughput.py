"""The training benchmark's bookkeeping: the figures it prints are computed from what it
recorded, warm-up left out, and the recipe it times keeps its own plugins (Liger)."""

import pytest
import yaml

from benchmarks import train_throughput as bench_train


def step(seconds, real, positions, loss=None):
    return {"seconds": seconds, "real": real, "positions": positions, "loss": loss}


def test_summary_leaves_out_warmup_and_counts_only_real_tokens():
    steps = [step(10.0, 100, 200), step(2.0, 900, 1000), step(2.0, 700, 1000)]
    s = bench_train.summarize(steps, warmup=1)
    assert s["measured_steps"] == 2
    assert s["real_tokens_per_s"] == pytest.approx(1600 / 4.0)
    assert s["padding_share"] == pytest.approx(1 - 1600 / 2000)
    assert s["step_seconds"] == pytest.approx(2.0)
    assert s["ceiling_share"] == pytest.approx(
        400 * bench_train.FLOPS_PER_TOKEN / bench_train.PEAK_BF16_FLOPS
    )


def test_table_gives_ratio_to_baseline_and_loss_gap_to_default():
    base = {"name": "baseline", "peak_allocated_gib": 11.9, "steps": [step(1.0, 500, 800)] * 3}
    default = {
        "name": "default",
        "peak_allocated_gib": 9.4,
        "steps": [step(1.0, 2000, 2048, loss=x) for x in (3.0, 2.5, 2.0)],
    }
    variant = {
        "name": "fast",
        "peak_allocated_gib": 19.6,
        "steps": [step(0.5, 2000, 2048, loss=x) for x in (3.0, 2.6, 2.0)],
    }
    failed = {"name": "broken", "rc": 1}
    lines = bench_train.table([base, default, variant, failed], warmup=1).splitlines()
    row = {line.split(" | ")[0].strip("| "): line for line in lines[2:]}
    assert "| 4.00 |" in row["default"] and "| 8.00 |" in row["fast"]
    assert "0.1000 (3 steps)" in row["fast"]
    assert "failed (rc 1)" in row["broken"]


def test_recipe_runs_keep_the_recipes_own_plugins():
    # The meter is added with a `plugins=` override, which replaces the list: the override the
    # benchmark passes must carry the recipe's plugins along, or it would time a recipe
    # without Liger.
    from training.recipe import resolve

    override = bench_train.plugins_override([])
    plugins = resolve("llama3-dialogsum", [override]).config["plugins"]
    assert plugins == ["axolotl.integrations.liger.LigerPlugin", "benchmarks.train_meter.BenchMeter"]


def test_a_variants_own_plugins_are_kept_beside_the_meter():
    from training.nf4_roundtrip import PLUGIN
    from training.recipe import resolve

    variant = [f"plugins=[axolotl.integrations.liger.LigerPlugin,{PLUGIN}]"]
    plugins = resolve("llama3-dialogsum", [*variant, bench_train.plugins_override(variant)]).config["plugins"]
    assert plugins == ["axolotl.integrations.liger.LigerPlugin", PLUGIN, "benchmarks.train_meter.BenchMeter"]


def test_profiled_steps_are_left_out_of_the_speed():
    steps = [step(10.0, 100, 200), step(2.0, 900, 1000), {**step(9.0, 900, 1000), "profiled": True}]
    s = bench_train.summarize(steps, warmup=1)
    assert s["measured_steps"] == 1 and s["real_tokens_per_s"] == pytest.approx(450.0)


def test_a_recipe_row_says_which_mode_the_runner_chose_on_its_gpu(tmp_path):
    run = {
        "memory_mode": "gradient_checkpointing: auto -> False (smallest GPU in use: 79.2 GiB; off from 60 GiB)",
        "base_mode": "base: bf16 at its NF4 round-trip values (smallest GPU in use: 79.2 GiB; from 60 GiB)",
    }
    (tmp_path / "run.yml").write_text(yaml.safe_dump(run))
    choices = bench_train.runner_choices(tmp_path)
    assert choices == ["gradient_checkpointing: auto -> False", "base: bf16 at its NF4 round-trip values"]
    default = {
        "name": "default",
        "peak_allocated_gib": 54.9,
        "changes": choices,
        "steps": [step(1.0, 2000, 2048)] * 2,
    }
    assert (
        "| gradient_checkpointing: auto -> False; base: bf16 at its NF4 round-trip values |"
        in bench_train.table([default], warmup=1)
    )
    fixed = {"memory_mode": None, "base_mode": None}  # the row's overrides fixed both
    (tmp_path / "run.yml").write_text(yaml.safe_dump(fixed))
    assert bench_train.runner_choices(tmp_path) == []
    assert bench_train.runner_choices(tmp_path / "killed before run.yml") == []

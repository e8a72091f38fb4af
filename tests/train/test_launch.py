"""The command `make train` starts: one process, several GPUs, several machines (and the
launches refused before any check); and every multi-GPU strategy file passes Axolotl's
schema with the recipes it is written for."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from training import launch, runner
from training.checks import validate
from training.hardware import choose_checkpointing
from training.launch import (
    Launch,
    apply_strategy,
    build_command,
    check_launch,
    strategy_names,
    trainer_environment,
)
from training.paths import STRATEGIES
from training.recipe import RecipeError, resolve
from training.runner import attach_run_paths

CONFIG = "/runs/x/config.yml"


def test_one_process_runs_the_trainer_module_directly():
    assert build_command(CONFIG, "axolotl") == [sys.executable, "-m", "training.axolotl_train", CONFIG]
    assert build_command(CONFIG, "seq2seq") == [sys.executable, "-m", "training.seq2seq", CONFIG]


def test_several_gpus_go_through_accelerate_launch():
    cmd = build_command(CONFIG, "axolotl", Launch(gpus=4))
    assert cmd == [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "4",
        "--num_machines", "1", "--dynamo_backend", "no", "-m", "training.axolotl_train", CONFIG,
    ]  # fmt: skip


def test_two_machines_of_eight_gpus():
    cmd = build_command(
        CONFIG, "axolotl", Launch(gpus=8, machines=2, machine_rank=1, main_process_ip="10.0.0.1")
    )
    assert cmd == [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "16",
        "--num_machines", "2", "--machine_rank", "1", "--main_process_ip", "10.0.0.1",
        "--main_process_port", "29500", "--dynamo_backend", "no", "-m", "training.axolotl_train", CONFIG,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("launch", "error"),
    [
        (Launch(gpus=8, machines=2), "several machines need the first machine's address: --main-process-ip"),
        (Launch(machines=2, machine_rank=2, main_process_ip="10.0.0.1"), "MACHINE_RANK=2 with MACHINES=2"),
        (Launch(machine_rank=1), "MACHINE_RANK=1 with MACHINES=1: the machine rank is 0 to 0"),
        (Launch(gpus=0), "GPUS=0 and MACHINES=1 must be whole numbers >= 1"),
    ],
)
def test_a_launch_that_cannot_start_is_refused_before_the_checks(launch, error, caplog):
    with pytest.raises(RecipeError, match=error):
        check_launch(launch)
    assert runner.train(runner.TrainRequest("smollm2-dialogsum", launch=launch)) == 2
    assert error.split(":")[0] in caplog.text


def test_an_unknown_strategy_names_the_known_ones():
    with pytest.raises(RecipeError, match="choose one of ddp, fsdp, zero2, zero3"):
        apply_strategy({}, "zero4")


def test_a_strategy_whose_package_is_missing_says_what_to_install(monkeypatch):
    monkeypatch.setattr(launch.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RecipeError, match=r"STRATEGY=zero3 needs deepspeed.*pip install deepspeed==0\.19\.8"):
        apply_strategy({}, "zero3")


def test_fsdp_swaps_bitsandbytes_optimizers_and_takes_layers_from_the_model(monkeypatch):
    config, changes = apply_strategy(resolve("llama3-dialogsum").config, "fsdp")
    assert config["optimizer"] == "adamw_torch_fused" and changes == [
        "optimizer: paged_adamw_8bit -> adamw_torch_fused (bitsandbytes optimizers cannot update FSDP's sharded parameters)"
    ]
    assert "transformer_layer_cls_to_wrap" not in config["fsdp_config"]  # accelerate reads the model's
    monkeypatch.setattr(launch, "STRATEGY_PACKAGES", {})
    config, changes = apply_strategy(resolve("llama3-dialogsum").config, "zero2")
    assert config["optimizer"] == "paged_adamw_8bit" and changes == []


# strategy -> recipes it is documented for (README: On GPUs)
DOCUMENTED = {
    "ddp": [
        "llama3-dialogsum",
        "phi2-dialogsum",
        "llama2-dolly-lora",
        "llama2-dolly-qlora",
        "smollm2-dialogsum-full",
    ],
    "zero2": ["llama3-dialogsum", "llama2-dolly-lora", "llama2-dolly-full"],
    "zero3": ["llama2-dolly-full", "llama2-dolly-lora"],
    "fsdp": ["llama2-dolly-full", "llama2-dolly-lora", "llama3-dialogsum", "phi2-dialogsum"],
}


@pytest.mark.parametrize(("strategy", "recipe"), [(s, r) for s, rs in DOCUMENTED.items() for r in rs])
def test_strategy_files_pass_the_schema_with_their_recipes(strategy, recipe, monkeypatch):
    monkeypatch.setattr(launch, "STRATEGY_PACKAGES", {})  # DeepSpeed is installed on GPU machines only
    assert sorted(DOCUMENTED) == strategy_names()
    resolved = resolve(recipe)
    resolved.config, _ = apply_strategy(resolved.config, strategy)
    for key, value in yaml.safe_load((STRATEGIES / f"{strategy}.yml").read_text()).items():
        assert resolved.config[key] == value  # the strategy's settings are in the run's config
    attach_run_paths(resolved, Path("/tmp/run"))
    choose_checkpointing(resolved.config, resolved.project["memory"], 79.2)  # as the runner does first
    validate(resolved)


def test_one_process_on_a_machine_of_several_gpus_trains_on_gpu_0():
    assert trainer_environment(Launch(gpus=1), gpu_count=2, env={}) == {"CUDA_VISIBLE_DEVICES": "0"}
    assert trainer_environment(Launch(gpus=1), gpu_count=1, env={}) == {}
    assert trainer_environment(Launch(gpus=2), gpu_count=2, env={}) == {}
    assert trainer_environment(Launch(gpus=1), gpu_count=4, env={"CUDA_VISIBLE_DEVICES": "2,3"}) == {}


def test_several_processes_without_a_gpu_train_together_on_the_cpu():
    on_cpu = {"ACCELERATE_USE_CPU": "true", "ACCELERATE_TORCH_DEVICE": "cpu"}
    assert trainer_environment(Launch(gpus=2), gpu_count=0, env={}) == on_cpu
    assert trainer_environment(Launch(machines=2, main_process_ip="h"), gpu_count=0, env={}) == on_cpu
    assert trainer_environment(Launch(gpus=1), gpu_count=0, env={}) == {}


def test_the_trainer_process_gets_the_pinned_device(monkeypatch, tmp_path):
    resolved = resolve("smollm2-dialogsum")
    run_info = {"environment": {"CUDA_VISIBLE_DEVICES": "0"}}
    monkeypatch.setattr(runner, "check", lambda request, block_checks: (resolved, tmp_path, run_info))
    seen = {}

    def fake_run(cmd, env, cwd):
        seen.update(env)
        return subprocess.CompletedProcess(cmd, 1)

    monkeypatch.setattr(runner.subprocess, "run", fake_run)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert runner.train(runner.TrainRequest("smollm2-dialogsum")) == 1
    assert seen["CUDA_VISIBLE_DEVICES"] == "0"

from pathlib import Path

import pytest
import yaml

from tests.conftest import DEMO_DATA
from training.checks import check_values, unknown_keys, validate
from training.hardware import adapt_to_cpu, choose_checkpointing, choose_nf4_round_trip
from training.paths import RECIPES
from training.recipe import RecipeError, apply_overrides, recipe_names, resolve
from training.runner import attach_run_paths


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_passes_axolotl_schema_and_unknown_key_check(name):
    resolved = resolve(name)
    check_values(resolved)
    attach_run_paths(resolved, Path("/tmp/run"))
    assert unknown_keys(resolved.config) == []
    choose_checkpointing(resolved.config, resolved.project["memory"], 79.2)  # as the runner does first
    validate(resolved)


def test_misspelled_top_level_key_is_caught_with_a_suggestion():
    resolved = resolve("smollm2-dialogsum", ["learning_rte=0.1"])
    assert any("learning_rte (did you mean 'learning_rate'?)" in p for p in unknown_keys(resolved.config))
    with pytest.raises(RecipeError, match="learning_rte"):
        validate(resolved)


def test_misspelled_dataset_key_is_caught():
    config = resolve("smollm2-dialogsum").config
    config["datasets"] = [{"path": "x.jsonl", "ds_typ": "json"}]
    assert unknown_keys(config) == ["datasets[0].ds_typ (did you mean 'ds_type'?)"]


def test_wrong_type_is_rejected_by_axolotl_schema():
    resolved = resolve("smollm2-dialogsum", ["micro_batch_size=lots"])
    resolved.config["datasets"] = [
        {"path": "x.jsonl", "ds_type": "json", "type": "datasets_fmt.axolotl_chat"}
    ]
    with pytest.raises(RecipeError, match="micro_batch_size"):
        validate(resolved)


def test_overrides_are_yaml_typed_and_reach_into_blocks():
    config = apply_overrides(
        {"data": {"corpus": "dialogsum"}},
        ["max_steps=10", "data.corpus=samsum", "lora_target_modules=[q_proj, v_proj]"],
    )
    assert config == {
        "data": {"corpus": "samsum"},
        "max_steps": 10,
        "lora_target_modules": ["q_proj", "v_proj"],
    }
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        apply_overrides({}, ["max_steps"])


def test_numbers_read_as_people_write_them(tmp_path):
    """PyYAML reads 1e-4 as a string; overrides and recipe files read it as a float."""
    config = apply_overrides({}, ["learning_rate=1e-4", "weight_decay=1E-2", "name=1e", "tag=abc"])
    assert config == {"learning_rate": 1e-4, "weight_decay": 0.01, "name": "1e", "tag": "abc"}
    recipe = tmp_path / "r.yml"
    recipe.write_text("inherit: " + str(RECIPES / "smollm2-dialogsum.yml") + "\nlearning_rate: 3e-4\n")
    resolved = resolve(str(recipe))
    assert resolved.config["learning_rate"] == 3e-4
    check_values(resolved)  # a string here failed: "must be a number in (0, 1]"


def test_inherit_merges_base_then_recipe():
    resolved = resolve("smollm2-dialogsum")
    config, project = resolved.config, resolved.project
    assert config["adapter"] == "lora" and config["lora_r"] == 16  # from _lora.yml
    assert config["train_on_inputs"] is False  # from _base.yml
    assert config["learning_rate"] == 3.0e-4  # the recipe's own value wins
    assert Path(config["base_model"]).is_absolute()
    assert project["data"]["format"] == "chat"


def test_unknown_project_key_and_unknown_recipe_are_explained():
    with pytest.raises(RecipeError, match="unknown key.*'data'.*formt"):
        resolve("smollm2-dialogsum", ["data.formt=chat"])
    with pytest.raises(RecipeError, match="did you mean 'smollm2-dialogsum'"):
        resolve("smollm2-dialogsum2")


def test_cpu_adaptation_turns_off_cuda_only_settings():
    config = {
        "bf16": "auto",
        "optimizer": "paged_adamw_8bit",
        "adapter": "qlora",
        "val_set_size": 0.05,
        "eval_steps": 10,
    }
    changes = adapt_to_cpu(config)
    assert config["bf16"] is False and config["fp16"] is False and config["lora_qkv_kernel"] is False
    assert config["optimizer"] == "adamw_torch" and config["val_set_size"] == 0 and "eval_steps" not in config
    assert any("CPU QLoRA" in c for c in changes)


@pytest.mark.parametrize(
    ("gpu_gib", "checkpointing"), [(79.2, False), (60.0, False), (47.5, True), (23.6, True), (None, True)]
)
def test_checkpointing_auto_is_off_only_on_gpus_of_the_recipes_size(gpu_gib, checkpointing):
    resolved = resolve("llama3-dialogsum")
    check_values(resolved)
    choice = choose_checkpointing(resolved.config, resolved.project["memory"], gpu_gib)
    assert resolved.config["gradient_checkpointing"] is checkpointing
    assert choice.startswith(f"gradient_checkpointing: auto -> {checkpointing} (")
    fixed = resolve("llama3-dialogsum", ["gradient_checkpointing=true"])
    assert choose_checkpointing(fixed.config, fixed.project["memory"], gpu_gib) is None
    assert fixed.config["gradient_checkpointing"] is True


def test_cpu_adaptation_drops_liger_and_keeps_other_plugins():
    config = resolve(
        "llama3-dialogsum", ["plugins=[axolotl.integrations.liger.LigerPlugin, my.Plugin]"]
    ).config
    assert config["liger_fused_linear_cross_entropy"] is True
    changes = adapt_to_cpu(config)
    assert config["plugins"] == ["my.Plugin"] and not [k for k in config if k.startswith("liger_")]
    assert any("LigerPlugin" in c and "GPU" in c for c in changes)
    config = resolve("llama3-dialogsum").config
    adapt_to_cpu(config)
    assert "plugins" not in config and unknown_keys(config) == []


def test_llama3_pad_token_exists_so_the_vocabulary_is_not_resized(llama3_tokenizer_dir):
    from transformers import AutoTokenizer

    config = resolve("llama3-dialogsum").config
    tokenizer = AutoTokenizer.from_pretrained(llama3_tokenizer_dir)
    pad = config["special_tokens"]["pad_token"]
    assert len(tokenizer) == 128256  # a new token would grow it, and every adapter would carry the embeddings
    assert tokenizer.convert_tokens_to_ids(pad) == 128004 and tokenizer.pad_token == pad
    assert pad not in (tokenizer.eos_token, "<|end_of_text|>")


def test_plugin_keys_are_known_only_while_the_plugin_is_listed():
    config = resolve("llama3-dialogsum").config  # lists Liger and sets its keys
    assert config["plugins"] == ["axolotl.integrations.liger.LigerPlugin"] and config["liger_rope"] is True
    assert unknown_keys(config) == []
    config = resolve("smollm2-dialogsum", ["liger_rms_norm=true"]).config  # plugin not listed
    assert [p.split()[0] for p in unknown_keys(config)] == ["liger_rms_norm"]


def test_lora_kernels_stay_off_where_axolotl_cannot_patch_the_attention():
    # Axolotl turns its LoRA kernels on unless told; on Phi-2 at full size they failed
    # ("Original O code not found", results/multi-gpu.md)
    config = resolve("phi2-dialogsum").config
    assert [config.get(k) for k in ("lora_qkv_kernel", "lora_o_kernel", "lora_mlp_kernel")] == [False] * 3


@pytest.mark.parametrize(
    ("gpu_gib", "round_trip"),
    [(139.8, True), (79.2, True), (44.4, True), (31.4, True), (29.9, False), (23.6, False), (None, False)],
)
def test_the_nf4_round_trip_is_chosen_only_on_gpus_of_the_recipes_size(gpu_gib, round_trip):
    from training.nf4_roundtrip import PLUGIN

    resolved = resolve("llama3-dialogsum")  # as shipped: from 30 GiB (19.0 GiB peak with checkpointing)
    choice = choose_nf4_round_trip(resolved.config, resolved.project["memory"], gpu_gib)
    config = resolved.config
    if round_trip:
        assert config["adapter"] == "lora" and config["load_in_4bit"] is False
        assert config["plugins"] == ["axolotl.integrations.liger.LigerPlugin", PLUGIN]
        assert choice.startswith("base: bf16 at its NF4 round-trip values")
        attach_run_paths(resolved, Path("/tmp/run"))
        choose_checkpointing(config, resolved.project["memory"], gpu_gib)  # as the runner does first
        validate(resolved)  # Axolotl takes the changed config
    else:
        assert config["adapter"] == "qlora" and config["load_in_4bit"] is True
        assert choice.startswith("base: 4-bit NF4 (")


@pytest.mark.parametrize(
    ("strategy", "round_trip"),
    [(None, True), ("ddp", True), ("zero2", True), ("fsdp", False), ("zero3", False)],
)
def test_the_nf4_round_trip_is_not_chosen_where_the_strategy_shards_the_base(strategy, round_trip):
    resolved = resolve("llama3-dialogsum")
    choice = choose_nf4_round_trip(resolved.config, resolved.project["memory"], 79.2, strategy)
    assert (resolved.config["adapter"] == "lora") is round_trip
    if not round_trip:
        assert (
            choice
            == f"base: 4-bit NF4 ({strategy} shards the base; the bf16 NF4 round trip needs it whole on every GPU)"
        )


def test_without_a_size_or_without_qlora_the_base_is_left_alone():
    fixed = resolve("llama3-dialogsum", ["memory.nf4_round_trip_from_gib=null"])
    assert choose_nf4_round_trip(fixed.config, fixed.project["memory"], 79.2) is None
    assert fixed.config["adapter"] == "qlora"
    lora = resolve("smollm2-dialogsum", ["memory.nf4_round_trip_from_gib=40"])
    assert choose_nf4_round_trip(lora.config, lora.project["memory"], 79.2) is None


def test_the_run_records_a_qlora_adapter_trained_on_the_round_trip(tmp_path, tiny_llama3, monkeypatch):
    from training import runner

    monkeypatch.setattr(runner, "smallest_gpu_gib", lambda gpus, launch: 80.0)  # as an H100 reports
    request = runner.TrainRequest(
        "llama3-dialogsum",
        overrides=[f"base_model={tiny_llama3}"],
        data_dir=str(DEMO_DATA),
        run_dir=tmp_path / "run",
    )
    runner.check(request, {})
    run = yaml.safe_load((tmp_path / "run" / "run.yml").read_text())
    config = yaml.safe_load((tmp_path / "run" / "config.yml").read_text())
    assert run["adapter"] == "qlora"  # merged and evaluated on the NF4 round trip, as QLoRA
    assert run["base_mode"].startswith(
        "base: bf16 at its NF4 round-trip values (smallest GPU in use: 80.0 GiB"
    )
    assert config["adapter"] == "lora" and "training.nf4_roundtrip.NF4RoundTrip" in config["plugins"]

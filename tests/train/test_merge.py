import json
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from training import merge
from training.merge import merge_adapter, nf4_round_trip


def logits(model_dir, text="#Person1#: Hello there."):
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt")).logits


def test_lora_merge_matches_base_plus_adapter(tmp_path, tiny_llama, tiny_adapter):
    out = tmp_path / "merged"
    check = merge_adapter(str(tiny_llama), tiny_adapter, out, qlora=False)
    assert check["max_abs_logit_diff"] <= check["tolerance"]
    assert json.loads((out / "merge_check.json").read_text()) == check
    assert not (out / "adapter_config.json").exists()  # a plain model, no PEFT wrapper
    # the adapter really changed the model
    assert (logits(out) - logits(tiny_llama)).abs().max() > 1e-2


def test_a_wrong_merge_is_refused_and_nothing_is_saved(tmp_path, tiny_llama, tiny_adapter, monkeypatch):
    real = merge.max_diff
    calls = []

    def off_by_one(a, b):  # the first comparison is merged vs base + adapter
        calls.append(1)
        return real(a, b) + (1.0 if len(calls) == 1 else 0.0)

    monkeypatch.setattr(merge, "max_diff", off_by_one)
    with pytest.raises(RuntimeError, match="differs from base \\+ adapter"):
        merge_adapter(str(tiny_llama), tiny_adapter, tmp_path / "merged", qlora=False)
    assert not (tmp_path / "merged").exists() and not (tmp_path / "merged.partial").exists()


def test_qlora_merge_matches_the_4bit_model_training_saw(tmp_path, tiny_llama, tiny_adapter):
    check = merge_adapter(
        str(tiny_llama), tiny_adapter, tmp_path / "merged", qlora=True, quantized_from="float32"
    )
    assert check["nf4_round_trip_layers"] == 2 * 7  # q,k,v,o,gate,up,down x 2 layers
    # Merged into the dequantized base: the weights equal what bitsandbytes dequantizes, and
    # the logits differ from its 4-bit forward pass by that kernel's own arithmetic (the base
    # alone through the kernel differs as much). Stored back in 4-bit, they drift far further.
    kernel = check["kernel_4bit_vs_dequantized_base"]
    assert 0 < check["vs_4bit_base_plus_adapter"] < 2 * kernel + 1e-4
    assert check["4bit_merge_vs_4bit_base_plus_adapter"] > 20 * check["vs_4bit_base_plus_adapter"]


def test_nf4_round_trip_moves_weights_onto_the_nf4_grid(tiny_llama):
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    before = model.model.layers[0].self_attn.q_proj.weight.clone()
    nf4_round_trip(model)
    after = model.model.layers[0].self_attn.q_proj.weight
    assert 0 < (after - before).abs().max() < before.abs().max()


def test_the_probe_runs_where_the_model_is_and_comes_back_to_the_cpu():
    seen = {}

    class OnMeta(torch.nn.Module):  # where a 4-bit base loads on a GPU machine: not the CPU
        device = torch.device("meta")

        def forward(self, **inputs):
            seen.update({name: value.device for name, value in inputs.items()})
            return SimpleNamespace(logits=torch.zeros(1, 2))

    probe = {"input_ids": torch.ones(1, 2, dtype=torch.long), "attention_mask": torch.ones(1, 2)}
    assert merge.probe_logits(OnMeta(), probe).device.type == "cpu"
    assert seen == {"input_ids": torch.device("meta"), "attention_mask": torch.device("meta")}


def test_merging_a_full_fine_tune_is_refused_with_what_to_do_instead(tmp_path, capsys):
    (tmp_path / "run.yml").write_text("recipe: llama2-dolly-full\nadapter: null\n")
    assert merge.main(["llama2-dolly-full", "--run-dir", str(tmp_path)]) == 2
    assert "trained every weight (adapter: null)" in capsys.readouterr().err

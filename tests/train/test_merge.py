import json

import torch
from merge import merge_adapter, nf4_round_trip
from transformers import AutoModelForCausalLM, AutoTokenizer


def logits(model_dir, text="#Person1#: Hello there."):
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt")).logits


def test_lora_merge_matches_base_plus_adapter(tmp_path, tiny_llama, tiny_adapter):
    out = tmp_path / "merged"
    check = merge_adapter(str(tiny_llama), tiny_adapter, out, qlora=False)
    assert check["ok"] and check["max_abs_logit_diff"] <= check["tolerance"]
    assert json.loads((out / "merge_check.json").read_text()) == check
    assert not (out / "adapter_config.json").exists()  # a plain model, no PEFT wrapper
    # the adapter really changed the model
    assert (logits(out) - logits(tiny_llama)).abs().max() > 1e-2


def test_qlora_merge_goes_through_nf4_round_trip(tmp_path, tiny_llama, tiny_adapter):
    check = merge_adapter(str(tiny_llama), tiny_adapter, tmp_path / "merged", qlora=True)
    assert check["ok"] and check["nf4_round_trip_layers"] == 2 * 7  # q,k,v,o,gate,up,down x 2 layers
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    before = model.model.layers[0].self_attn.q_proj.weight.clone()
    nf4_round_trip(model)
    after = model.model.layers[0].self_attn.q_proj.weight
    # the weights moved onto the NF4 grid: close to the original, but not equal
    assert 0 < (after - before).abs().max() < before.abs().max()

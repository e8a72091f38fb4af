"""The NF4 round trip computes with exactly the weights the 4-bit path dequantizes to."""

import pytest
import torch

from training.nf4_roundtrip import round_trip_linear_weights


def test_round_tripped_weights_equal_what_the_4bit_model_dequantizes(tiny_llama_untied):
    bnbf = pytest.importorskip("bitsandbytes.functional")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    four_bit = AutoModelForCausalLM.from_pretrained(
        tiny_llama_untied,
        dtype=torch.float32,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32,
        ),
    )
    plain = AutoModelForCausalLM.from_pretrained(tiny_llama_untied, dtype=torch.float32)
    original = plain.model.layers[0].mlp.down_proj.weight.detach().clone()

    assert round_trip_linear_weights(plain) == 2 * 7  # q k v o gate up down per layer; lm_head kept

    layers = dict(plain.named_modules())
    for name, module in four_bit.named_modules():
        if isinstance(module, torch.nn.Linear) and hasattr(module.weight, "quant_state"):
            expected = bnbf.dequantize_4bit(module.weight.data, module.weight.quant_state)
            assert torch.equal(layers[name].weight.data, expected.to(torch.float32)), name
    assert not torch.equal(plain.model.layers[0].mlp.down_proj.weight, original)  # it did change
    assert torch.equal(plain.lm_head.weight, four_bit.lm_head.weight)  # the output layer stays as loaded

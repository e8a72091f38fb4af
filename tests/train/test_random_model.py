"""Random-weight models of the recipes' real architectures: the shapes are the published
ones, and a stand-in tokenizer only ever grows the vocabulary."""

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from training.random_model import fit_tokenizer, load_config, make_random_model, shape_names

# shape -> published parameter count (billions, to 2 decimals) of the released model. Flan-T5
# is published as 2.85B / 11.14B with a separate output layer; transformers 5 ties it to the
# embedding (T5Config forces tie_word_embeddings), one 32,128 x d_model matrix fewer.
PUBLISHED = {"llama-2-7b": 6.74, "phi-2": 2.78, "flan-t5-xl": 2.85 - 0.07, "flan-t5-xxl": 11.14 - 0.14}


@pytest.mark.parametrize("shape", shape_names())
def test_each_shape_has_its_published_size(shape):
    config = load_config(None, shape, tiny=False)
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(config)
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 2) == pytest.approx(PUBLISHED[shape])


def test_a_stand_in_tokenizer_grows_the_vocabulary_and_sets_special_tokens(smollm2_dir):
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)  # 49,152 tokens
    t5 = load_config(None, "flan-t5-xl", tiny=False)
    assert fit_tokenizer(t5, tokenizer) == {"published_vocab_size": 32128, "vocab_size": len(tokenizer)}
    assert t5.decoder_start_token_id == t5.pad_token_id == tokenizer.pad_token_id
    phi = load_config(None, "phi-2", tiny=False)
    assert fit_tokenizer(phi, tokenizer)["vocab_size"] == 51200  # already covers it: unchanged


def test_a_tiny_t5_is_saved_with_its_tokenizer_and_record(tmp_path, smollm2_dir):
    out = tmp_path / "t5"
    summary = make_random_model(out, shape="flan-t5-xxl", tokenizer_dir=smollm2_dir, tiny=True)
    assert json.loads((out / "random_model.json").read_text()) == summary
    config = AutoConfig.from_pretrained(out)
    assert config.model_type == "t5" and config.num_layers == 2 and config.vocab_size == 49152
    assert AutoModelForSeq2SeqLM.from_pretrained(out).num_parameters() == summary["params"]
    assert (
        AutoTokenizer.from_pretrained(out).vocab_size == AutoTokenizer.from_pretrained(smollm2_dir).vocab_size
    )


def test_a_random_lora_adapter_is_saved_beside_the_model_and_changes_its_outputs(tmp_path, smollm2_dir):
    from peft import PeftModel

    out = tmp_path / "llama"
    summary = make_random_model(out, shape="llama-2-7b", tokenizer_dir=smollm2_dir, tiny=True, lora_rank=4)
    adapter = tmp_path / "llama-lora-r4"
    assert summary["lora_adapter"] == str(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(out.resolve()) and config["r"] == 4
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= set(
        config["target_modules"]
    )
    base = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([[1, 2, 3, 4]])
    plain = base(ids).logits
    adapted = PeftModel.from_pretrained(base, adapter)(ids).logits
    assert not torch.allclose(plain, adapted)

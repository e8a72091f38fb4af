"""Shared fixtures. Tests never touch the network: models come from `make model` (the
registry packages), tiny random models are built here, data from data/demo or the folder
SHARED_DATA_DIR names (by default the shared data folder beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["AXOLOTL_DO_NOT_TRACK"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from training.paths import REPO, models_dir  # noqa: E402 (after the offline switches above)

MODELS = models_dir()
SHARED_DATA = Path(os.environ.get("SHARED_DATA_DIR", REPO.parent / "shared" / "data"))
DEMO_DATA = REPO / "data" / "demo"


def _model_dir(name: str) -> Path:
    path = MODELS / name
    if not (path / ".complete").exists():
        pytest.skip(f"{path} not materialized: run `make model` (tests run it via `make test`)")
    return path


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    return _model_dir("SmolLM2-135M-Instruct")


@pytest.fixture(scope="session")
def llama3_tokenizer_dir() -> Path:
    return _model_dir("llama3-tokenizer")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "dialogsum" / "test.jsonl").exists():
        pytest.skip(
            f"real DialogSum/SAMSum not found at {SHARED_DATA} (set SHARED_DATA_DIR); these checks need it"
        )
    return SHARED_DATA


def _tiny_model(tmp_path_factory, name: str, tokenizer, model_cls, config) -> Path:
    """Save a randomly initialised model (seeded) with its tokenizer and generation config."""
    import torch
    from transformers import GenerationConfig

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp(name)
    model_cls(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    generation = GenerationConfig.from_model_config(config)  # keeps T5's decoder_start_token_id
    generation.eos_token_id, generation.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
    generation.save_pretrained(out)
    return out


def tiny_llama_config(tokenizer, **extra):
    """2 layers, hidden 128, head_dim 64 (vLLM's CPU attention does not support 16)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        **extra,
    )


def _special_ids(tokenizer) -> dict:
    return {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory, smollm2_dir) -> Path:
    """A 2-layer random Llama with SmolLM2's real tokenizer (head_dim 64: vLLM's CPU
    attention does not support 16)."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = tiny_llama_config(tokenizer, tie_word_embeddings=True, **_special_ids(tokenizer))
    return _tiny_model(tmp_path_factory, "tiny-llama", tokenizer, LlamaForCausalLM, config)


@pytest.fixture(scope="session")
def tiny_llama_untied(tmp_path_factory, smollm2_dir) -> Path:
    """tiny_llama with an output layer of its own (untied embeddings, as Llama-3-8B has)."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = tiny_llama_config(tokenizer, tie_word_embeddings=False, **_special_ids(tokenizer))
    return _tiny_model(tmp_path_factory, "tiny-llama-untied", tokenizer, LlamaForCausalLM, config)


@pytest.fixture(scope="session")
def tiny_llama3(tmp_path_factory, llama3_tokenizer_dir) -> Path:
    """A 2-layer random Llama with the real Llama-3 tokenizer and chat template."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(llama3_tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=2048,
        bos_token_id=128000,
        eos_token_id=128009,
        pad_token_id=tokenizer.pad_token_id,
    )
    return _tiny_model(tmp_path_factory, "tiny-llama3", tokenizer, LlamaForCausalLM, config)


@pytest.fixture(scope="session")
def tiny_phi(tmp_path_factory, smollm2_dir) -> Path:
    """A 2-layer random Phi (transformers' native PhiForCausalLM: q/k/v_proj, dense, fc1/fc2)."""
    from transformers import AutoTokenizer, PhiConfig, PhiForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    tokenizer.chat_template = None  # a base model, like Phi-2
    config = PhiConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=2048,
        partial_rotary_factor=0.5,
        **_special_ids(tokenizer),
    )
    return _tiny_model(tmp_path_factory, "tiny-phi", tokenizer, PhiForCausalLM, config)


@pytest.fixture(scope="session")
def tiny_t5(tmp_path_factory, smollm2_dir) -> Path:
    """A 2-layer random T5 (q/k/v/o attention like Flan-T5) with SmolLM2's tokenizer."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=64,
        d_ff=128,
        d_kv=32,
        num_layers=2,
        num_heads=2,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    return _tiny_model(tmp_path_factory, "tiny-t5", tokenizer, T5ForConditionalGeneration, config)


def random_adapter(out: Path, base: Path, seed: int) -> Path:
    """A LoRA adapter with random (non-zero) weights on every linear layer of ``base``."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(
        r=8, lora_alpha=16, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM"
    )
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(out)
    return out


def perturbed_model(out: Path, base: Path, seed: int) -> Path:
    """``base`` with seeded noise on every weight, saved as a full fine-tune's checkpoint: a
    whole model that generates differently from the base. No tokenizer: the evaluator uses
    the base's, which encoded its prompts."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.5)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_adapter(tmp_path_factory, tiny_llama) -> Path:
    return random_adapter(tmp_path_factory.mktemp("tiny-adapter"), tiny_llama, seed=1)


def token_forcing_model(tmp_path_factory, tokenizer_dir: Path, token_id: int, eos_ids: list[int]) -> Path:
    """A tiny random Llama (real tokenizer) whose greedy choice is ``token_id`` at every step:
    the last MLP's bias pushes one hidden dimension far up, and only ``token_id``'s output
    row reads it. ``eos_ids`` is what its generation config names as end-of-sequence."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = tiny_llama_config(
        tokenizer,
        mlp_bias=True,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=eos_ids,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.layers[-1].mlp.down_proj.bias.zero_()
        model.model.layers[-1].mlp.down_proj.bias[0] = 1000.0
        model.lm_head.weight[:, 0] = 0.0
        model.lm_head.weight[token_id, 0] = 10.0
    out = tmp_path_factory.mktemp(f"forces-{token_id}")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id
    ).save_pretrained(out)
    return out

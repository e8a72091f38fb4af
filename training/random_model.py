"""Save a model of a real architecture with RANDOM weights, for GPU proofs of the recipes.

Why: the real weights are gated or large (and an air-gapped node cannot download them), but
memory use, speed and whether a training path (bitsandbytes 4/8-bit, LoRA, FSDP, ZeRO)
works at all depend only on the model's shapes, dtypes and tokenizer, not on the weight
values. The loss of such a model starts near ln(vocab) and says nothing about quality.

The shape comes from a ``config.json`` folder (the Llama-3 tokenizer package ships
Llama-3-8B's) or from ``training/model_shapes/<name>.json``, the published config.json
values of the other recipes' models. The tokenizer may be a stand-in where the real one is
not at hand: the vocabulary then grows to cover it (never shrinks), and ``random_model.json``
in the output records both sizes. The weights are created in bf16 on the GPU when there is
one (a CPU init of 8B parameters takes minutes) and saved as sharded safetensors.

``--lora-rank R`` also saves a random LoRA adapter of rank R on every linear layer (B not
zero, so it changes every output) to ``<out>-lora-r<R>``, its ``adapter_config.json`` naming
``out`` as its base: evaluating and serving an adapter of the real shape (``make eval
ADAPTER=<out>-lora-r16``, then ``make serve RUN_DIR=runs/external/...``) need no training run.

    python scripts/make_random_model.py --config-dir .cache/models/llama3-tokenizer --out .cache/models/llama3-8b-random [--lora-rank 16]
    python scripts/make_random_model.py --shape llama-2-7b --tokenizer-dir .cache/models/SmolLM2-135M-Instruct --out ...
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

SHAPES = Path(__file__).parent / "model_shapes"

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
)

# The same family shrunk to 2 layers: a one-minute smoke test of the whole path.
TINY = {
    "llama": {
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 64,
    },
    "phi": {
        "hidden_size": 256,
        "intermediate_size": 512,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 4,
    },
    "t5": {"d_model": 256, "d_ff": 512, "d_kv": 64, "num_heads": 4, "num_layers": 2, "num_decoder_layers": 2},
}


def shape_names() -> list[str]:
    return sorted(p.stem for p in SHAPES.glob("*.json"))


def load_config(config_dir: Path | None, shape: str | None, tiny: bool):
    """The model config of a folder's config.json or of a shipped shape, shrunk if ``tiny``."""
    from transformers import AutoConfig

    if shape:
        path = SHAPES / f"{shape}.json"
        if not path.exists():
            raise SystemExit(f"no model shape '{shape}': choose one of {', '.join(shape_names())}")
        values = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
        config = AutoConfig.for_model(values.pop("model_type"), **values)
    else:
        config = AutoConfig.from_pretrained(config_dir)
    if tiny:
        for key, value in TINY[config.model_type].items():
            setattr(config, key, value)
    return config


def fit_tokenizer(config, tokenizer) -> dict:
    """Grow the vocabulary to cover the tokenizer and take its special tokens."""
    published = config.vocab_size
    config.vocab_size = max(published, len(tokenizer))
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, name)
        if value is not None:
            setattr(config, name, value)
    if config.is_encoder_decoder:  # T5 starts decoding from its pad token
        config.decoder_start_token_id = tokenizer.pad_token_id
    return {"published_vocab_size": published, "vocab_size": config.vocab_size}


def make_random_model(
    out: Path,
    config_dir: Path | None = None,
    shape: str | None = None,
    tokenizer_dir: Path | None = None,
    seed: int = 0,
    tiny: bool = False,
    max_shard_size: str = "5GB",
    lora_rank: int | None = None,
) -> dict:
    """Build the model of ``shape`` (or ``config_dir``'s config.json) with random bf16 weights
    and save it, with the tokenizer files of ``tokenizer_dir`` (default ``config_dir``), to
    ``out``. Returns the summary it also writes to ``out/random_model.json``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    started = time.time()
    tokenizer_dir = tokenizer_dir or config_dir
    if tokenizer_dir is None:
        raise SystemExit("a --shape needs a --tokenizer-dir (the real tokenizer, or a stand-in)")
    config = load_config(config_dir, shape, tiny)
    vocab = fit_tokenizer(config, AutoTokenizer.from_pretrained(tokenizer_dir))
    auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)
    with torch.device(device):
        model = auto.from_config(config, dtype=torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    built = time.time() - started
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, max_shard_size=max_shard_size)
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, out / name)
    if config_dir and (config_dir / "generation_config.json").exists():
        shutil.copy(config_dir / "generation_config.json", out / "generation_config.json")
    adapter = save_random_lora(model, out, lora_rank, seed) if lora_rank else None
    summary = {
        "shape": shape or str(config_dir),
        "tokenizer": str(tokenizer_dir),
        **vocab,
        "params": params,
        "device": device,
        "build_seconds": round(built, 1),
        "total_seconds": round(time.time() - started, 1),
        **({"lora_adapter": str(adapter)} if adapter else {}),
    }
    (out / "random_model.json").write_text(json.dumps(summary, indent=1) + "\n")
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return summary


def save_random_lora(model, out: Path, rank: int, seed: int) -> Path:
    """A LoRA adapter of ``rank`` with random A and B on every linear layer of ``model`` (the
    model saved in ``out``), saved beside it; returns its folder."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed + 1)
    task = "SEQ_2_SEQ_LM" if model.config.is_encoder_decoder else "CAUSAL_LM"
    # the short names (q_proj, ...), as a trained adapter's config lists them; the output layer stays
    linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    targets = sorted(linear - {"lm_head"})
    config = LoraConfig(
        r=rank, lora_alpha=2 * rank, target_modules=targets, init_lora_weights=False, task_type=task
    )
    peft_model = get_peft_model(model, config)
    peft_model.peft_config["default"].base_model_name_or_path = str(out.resolve())
    adapter = out.parent / f"{out.name}-lora-r{rank}"
    peft_model.save_pretrained(adapter)
    return adapter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--config-dir", type=Path, help="folder with config.json (and tokenizer files)")
    source.add_argument("--shape", choices=shape_names(), help="a published config in training/model_shapes/")
    parser.add_argument("--tokenizer-dir", type=Path, help="default: --config-dir")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="shrink to 2 layers (smoke test)")
    parser.add_argument("--lora-rank", type=int, help="also save a random LoRA adapter of this rank")
    args = parser.parse_args()
    summary = make_random_model(
        args.out,
        args.config_dir,
        args.shape,
        args.tokenizer_dir,
        args.seed,
        args.tiny,
        lora_rank=args.lora_rank,
    )
    print(json.dumps(summary, indent=1))

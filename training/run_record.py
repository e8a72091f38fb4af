"""What a training run recorded in its ``run.yml``, read the same way by every command that
uses the run (evaluate, serve, merge, the model card)."""

from __future__ import annotations


def trained_every_weight(run: dict) -> bool:
    """A full fine-tune (``adapter: null``): its own model is the fine-tuned side, with no
    adapter to apply, merge or serve as a LoRA module."""
    return not run.get("adapter")


def is_qlora(run: dict) -> bool:
    """An adapter trained on the 4-bit NF4 base."""
    return run.get("adapter") == "qlora"


def quantized_from(run: dict) -> str:
    """The dtype the base was in when QLoRA quantized it: bf16 on a GPU, fp32 on a CPU."""
    return "bfloat16" if run.get("hardware") == "cuda" else "float32"

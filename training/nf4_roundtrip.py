"""QLoRA's math without its per-step dequantization: the frozen base held in bf16 at the very
values its 4-bit NF4 copy dequantizes to.

Why: a QLoRA step dequantizes every base weight in the forward and again in the backward
pass. Where the GPU has memory for the 16-bit base (16 GB for an 8B model), quantizing each
weight once and keeping its dequantized values computes the same function as the 4-bit path,
without that work in every step. The adapter trained this way belongs to the same NF4 base:
it is merged and evaluated exactly like a QLoRA adapter.

Axolotl loads this plugin from the recipe's ``plugins:`` list; it acts after the model is
built, before the LoRA layers are added, on every linear layer that bitsandbytes would have
quantized (all but the output embedding), with the recipe's ``bnb_config_kwargs``.
"""

from __future__ import annotations

import logging
from typing import Any

try:  # only inside Axolotl's process does the plugin base matter
    from axolotl.integrations.base import BasePlugin
except Exception:  # noqa: BLE001 - axolotl absent or broken: the plugin is not used then
    BasePlugin = object  # type: ignore[misc,assignment]

PLUGIN = "training.nf4_roundtrip.NF4RoundTrip"
log = logging.getLogger("axolotl.nf4_roundtrip")  # under Axolotl's logger: shown in its output


def round_trip_linear_weights(model: Any, quant_type: str = "nf4", double_quant: bool = True) -> int:
    """Replace each linear weight but the output embedding's by its 4-bit round trip, with the
    arguments bitsandbytes' ``Params4bit`` quantizes with; return how many were replaced."""
    import bitsandbytes.functional as bnbf
    import torch

    output = model.get_output_embeddings()
    replaced = 0
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear) or module is output:
            continue
        weight = module.weight.data
        packed, state = bnbf.quantize_4bit(
            weight, compress_statistics=double_quant, quant_type=quant_type, quant_storage=torch.uint8
        )
        module.weight.data = bnbf.dequantize_4bit(packed, state).to(weight.dtype)
        replaced += 1
    return replaced


class NF4RoundTrip(BasePlugin):  # type: ignore[misc,valid-type]
    """Axolotl plugin: the base's linear weights become their NF4 round trip once, at load."""

    def post_model_build(self, cfg: Any, model: Any) -> None:
        kwargs = cfg.get("bnb_config_kwargs") or {}
        replaced = round_trip_linear_weights(
            model,
            quant_type=kwargs.get("bnb_4bit_quant_type", "nf4"),
            double_quant=bool(kwargs.get("bnb_4bit_use_double_quant", True)),
        )
        log.info("%d linear weights replaced by their 4-bit round trip", replaced)

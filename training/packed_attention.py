"""Packed rows' attention boundaries read from the GPU once per forward pass, not once a layer.

Why: with sample packing, Axolotl 0.19's SDPA varlen patch
(``axolotl/monkeypatch/attention/sdpa_varlen.py``) asks, in every attention layer, whether the
row is packed (``int((position_ids == 0).sum())``) and rebuilds ``cu_seqlens`` and the longest
length from ``position_ids`` (a ``nonzero`` and two ``int()`` reads). Each is a host-device
synchronization, so a 32-layer model waits on the GPU about a hundred times a forward pass and
the host can never queue kernels ahead. Every layer gets the same ``position_ids`` tensor, so
the answers are computed for its first layer and reused by the others: the same values, the
same kernels, fewer waits.

Axolotl loads this plugin from the recipe's ``plugins:`` list; after its own patches, it
rebuilds the varlen wrapper around these cached helpers. With a flash-attention kernel
(``attn_implementation: flash_attention_2`` / ``_4``) transformers' own varlen path asks the
same questions; there the plugin caches its helper and hands the longest lengths on as ints,
which FlashAttention 4 requires. Otherwise (CPU, no packing, another attention) it changes
nothing.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

try:  # only inside Axolotl's process does the plugin base matter
    from axolotl.integrations.base import BasePlugin
except Exception:  # noqa: BLE001 - axolotl absent or broken: the plugin is not used then
    BasePlugin = object  # type: ignore[misc,assignment]

PLUGIN = "training.packed_attention.PackedAttentionOncePerPass"
log = logging.getLogger("axolotl.packed_attention")  # under Axolotl's logger: shown in its output


def once_per_tensor(compute: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``compute(tensor)`` remembered for the last tensor it was given, until that tensor is
    freed or changed in place (its version counter moves); any other tensor computes afresh."""
    last: dict[str, Any] = {}

    def cached(tensor: Any) -> Any:
        ref = last.get("ref")
        if ref is not None and ref() is tensor and last["version"] == tensor._version:
            return last["value"]
        value = compute(tensor)
        last.update(ref=weakref.ref(tensor), version=tensor._version, value=value)
        return value

    return cached


def with_int_max_lengths(prepare: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """transformers' ``prepare_fa_kwargs_from_position_ids`` with the longest lengths as Python
    ints: read once here, so the callers' ``int(max_q)`` costs nothing in later layers."""

    def prepare_ints(position_ids: Any) -> Any:
        (cu_q, cu_k), (max_q, max_k) = prepare(position_ids)
        return (cu_q, cu_k), (int(max_q), int(max_k))

    return prepare_ints


def install(varlen_module: Any, registry: Any) -> bool:
    """Rebuild Axolotl's registered varlen ``sdpa`` wrapper around the cached helpers; False
    when the varlen patch is not in place (nothing to rebuild)."""
    current = registry["sdpa"]
    if getattr(current, "_once_per_pass", False):
        return True
    original = getattr(current, "_axolotl_sdpa_original", None)
    if original is None:
        return False
    import transformers.modeling_flash_attention_utils as fa_utils

    varlen_module._is_packed = once_per_tensor(varlen_module._is_packed)
    prepare = fa_utils.prepare_fa_kwargs_from_position_ids
    fa_utils.prepare_fa_kwargs_from_position_ids = once_per_tensor(with_int_max_lengths(prepare))
    try:  # the wrapper imports the helper when it is built
        wrapper = varlen_module._build_varlen_forward(original)
    finally:
        fa_utils.prepare_fa_kwargs_from_position_ids = prepare
    wrapper._axolotl_sdpa_original = original
    wrapper._once_per_pass = True
    registry.register("sdpa", wrapper)
    return True


def install_flash(fa_utils: Any) -> bool:
    """For the flash-attention kernels: transformers' ``prepare_fa_kwargs_from_position_ids``
    cached per tensor and returning the longest lengths as ints. transformers hands them on as
    0-d tensors; FlashAttention 2 reads them itself, one sync a layer, and FlashAttention 4
    (CuTe DSL) rejects them ("Expected IntTuple, whose leaves are integers"). False when
    already installed."""
    current = fa_utils.prepare_fa_kwargs_from_position_ids
    if getattr(current, "_once_per_pass", False):
        return False
    patched = once_per_tensor(with_int_max_lengths(current))
    patched._once_per_pass = True  # type: ignore[attr-defined]
    fa_utils.prepare_fa_kwargs_from_position_ids = patched
    return True


class PackedAttentionOncePerPass(BasePlugin):  # type: ignore[misc,valid-type]
    """Axolotl plugin: packed rows' boundaries computed once per forward pass."""

    def post_model_build(self, cfg: Any, model: Any) -> None:
        from axolotl.monkeypatch.attention import sdpa_varlen
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        if install(sdpa_varlen, ALL_ATTENTION_FUNCTIONS):
            log.info("packed rows' attention boundaries: computed once per forward pass")
        elif str(getattr(cfg, "attn_implementation", None) or "").startswith("flash_attention"):
            import transformers.modeling_flash_attention_utils as fa_utils

            install_flash(fa_utils)
            log.info("packed rows' flash-attention boundaries: computed once per forward pass, as ints")

"""Packed rows' attention boundaries are computed once per forward pass, with the same results."""

import pytest
import torch

from training.packed_attention import (
    PackedAttentionOncePerPass,
    install,
    install_flash,
    once_per_tensor,
    with_int_max_lengths,
)

LAYERS = 32
# two packed rows: documents of 3, 2 and 3 tokens, then 4 and 4
POSITIONS = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2], [0, 1, 2, 3, 0, 1, 2, 3]])


def test_once_per_tensor_recomputes_only_for_another_or_changed_tensor():
    calls = []
    cached = once_per_tensor(lambda t: calls.append(1) or int(t.sum()))
    pid = POSITIONS.clone()
    assert [cached(pid) for _ in range(LAYERS)] == [13 + 6] * LAYERS
    assert len(calls) == 1
    pid[0, 0] = 5  # changed in place: its version counter moves
    assert cached(pid) == 24 and len(calls) == 2
    assert cached(POSITIONS.clone()) == 19 and len(calls) == 3  # another tensor with other values


def test_longest_lengths_become_ints_with_the_same_values():
    from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

    (cu_q, cu_k), (max_q, max_k) = with_int_max_lengths(prepare_fa_kwargs_from_position_ids)(POSITIONS)
    (ref_q, _), (ref_max, _) = prepare_fa_kwargs_from_position_ids(POSITIONS)
    assert torch.equal(cu_q, ref_q) and cu_k is cu_q
    assert cu_q.tolist() == [0, 3, 5, 8, 12, 16]
    assert (max_q, max_k) == (4, 4) and type(max_q) is int and max_q == int(ref_max)


@pytest.fixture
def varlen_registry(monkeypatch):
    """Axolotl's SDPA varlen patch in a copy of transformers' attention registry."""
    sdpa_varlen = pytest.importorskip("axolotl.monkeypatch.attention.sdpa_varlen")
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    monkeypatch.setattr(AttentionInterface, "_global_mapping", dict(AttentionInterface._global_mapping))
    registry = AttentionInterface()
    calls = []
    counted = sdpa_varlen._is_packed  # monkeypatch puts it back afterwards
    monkeypatch.setattr(sdpa_varlen, "_is_packed", lambda pid: calls.append(1) or counted(pid))
    original = ALL_ATTENTION_FUNCTIONS["sdpa"]
    wrapper = sdpa_varlen._build_varlen_forward(original)
    wrapper._axolotl_sdpa_original = original
    registry.register("sdpa", wrapper)
    return sdpa_varlen, registry, calls


def attention_through_layers(forward, layers: int = LAYERS) -> list[torch.Tensor]:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 4, 8, 16) for _ in range(3))
    module = torch.nn.Module()
    module.is_causal, module.training = True, False
    return [forward(module, q, k, v, None, position_ids=POSITIONS)[0] for _ in range(layers)]


def test_installed_wrapper_asks_once_per_pass_and_attends_the_same(varlen_registry):
    sdpa_varlen, registry, calls = varlen_registry
    before = attention_through_layers(registry["sdpa"])
    assert len(calls) == LAYERS  # Axolotl's patch asks in every layer

    assert install(sdpa_varlen, registry) is True
    calls.clear()
    after = attention_through_layers(registry["sdpa"])
    assert len(calls) == 1
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert install(sdpa_varlen, registry) is True and len(calls) == 1  # a second install wraps nothing again


def test_install_leaves_stock_attention_alone():
    from transformers.modeling_utils import AttentionInterface

    sdpa_varlen = pytest.importorskip("axolotl.monkeypatch.attention.sdpa_varlen")
    registry = AttentionInterface()
    stock = registry["sdpa"]
    assert install(sdpa_varlen, registry) is False
    assert registry["sdpa"] is stock


@pytest.fixture
def counted_prepare(monkeypatch):
    """transformers' flash-attention helper, counting its calls (put back afterwards)."""
    import transformers.modeling_flash_attention_utils as fa_utils

    calls = []
    prepare = fa_utils.prepare_fa_kwargs_from_position_ids
    monkeypatch.setattr(
        fa_utils, "prepare_fa_kwargs_from_position_ids", lambda pid: calls.append(1) or prepare(pid)
    )
    return fa_utils, calls


def flash_boundaries_through_layers(fa_utils, layers: int = LAYERS) -> list:
    q = torch.zeros(1, 16, 4, 8)  # transformers' flash path: (batch, tokens, heads, dim)
    position_ids = POSITIONS.view(1, -1)  # one tensor that every layer gets
    return [fa_utils._prepare_from_posids(q, q, q, position_ids)[3:] for _ in range(layers)]


def test_flash_attention_gets_int_longest_lengths_once_per_pass(counted_prepare):
    fa_utils, calls = counted_prepare
    before = flash_boundaries_through_layers(fa_utils)
    assert len(calls) == LAYERS and torch.is_tensor(before[0][1][0])  # stock: a 0-d tensor a layer

    assert install_flash(fa_utils) is True
    calls.clear()
    after = flash_boundaries_through_layers(fa_utils)
    assert len(calls) == 1
    (cu_q, _), (max_q, max_k) = after[0]
    assert type(max_q) is int and type(max_k) is int  # FlashAttention 4 takes only ints
    assert torch.equal(cu_q, before[0][0][0]) and max_q == int(before[0][1][0])
    assert install_flash(fa_utils) is False  # installed once


def test_the_plugin_fixes_flash_attention_runs_only(counted_prepare):
    pytest.importorskip("axolotl.monkeypatch.attention.sdpa_varlen")
    fa_utils, _ = counted_prepare
    stock = fa_utils.prepare_fa_kwargs_from_position_ids
    plugin = PackedAttentionOncePerPass()

    plugin.post_model_build(type("Cfg", (), {"attn_implementation": "sdpa"})(), model=None)
    assert fa_utils.prepare_fa_kwargs_from_position_ids is stock
    plugin.post_model_build(type("Cfg", (), {"attn_implementation": "flash_attention_4"})(), model=None)
    assert fa_utils.prepare_fa_kwargs_from_position_ids is not stock
    assert type(flash_boundaries_through_layers(fa_utils, 1)[0][1][0]) is int


def test_the_runner_adds_it_to_packed_runs_only():
    from training.runner import RANK_REPORT, attach_project_plugins

    packed, unpacked = {"sample_packing": True, "plugins": ["liger"]}, {"sample_packing": False}
    attach_project_plugins(packed)
    attach_project_plugins(unpacked)
    assert packed["plugins"] == ["liger", RANK_REPORT, "training.packed_attention.PackedAttentionOncePerPass"]
    assert unpacked["plugins"] == [RANK_REPORT]


def test_a_plugin_the_recipe_already_names_is_not_added_twice():
    from training.runner import RANK_REPORT, attach_project_plugins

    config = {
        "sample_packing": True,
        "plugins": [RANK_REPORT, "training.packed_attention.PackedAttentionOncePerPass"],
    }
    attach_project_plugins(config)
    assert config["plugins"] == [RANK_REPORT, "training.packed_attention.PackedAttentionOncePerPass"]

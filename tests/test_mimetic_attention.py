"""mimetic_attention_: the products it sets, what it touches, seeds, errors."""

import math

import pytest
import torch
from conftest import make_vit
from torch import nn

from mimetic.init import InitError, attention_products, mimetic_attention_
from mimetic.init.factorize import identity_plus_noise

SHAPES = [(192, 3), (64, 4), (96, 6), (128, 2)]


def best_rank_k(m: torch.Tensor, k: int) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(m)
    return u[:, :k] @ torch.diag(s[:k]) @ vh[:k]


def replay_targets(seed: int, layers: int, heads: int, d: int, a_qk=0.7, b_qk=0.7, a_vo=0.4, b_vo=0.4):
    """Redraw the targets in the documented order: per layer, each head's QK, then VO."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(layers):
        qk = [identity_plus_noise(d, d, alpha=a_qk, beta=b_qk, generator=g) for _ in range(heads)]
        vo = identity_plus_noise(d, d, alpha=a_vo, beta=-b_vo, generator=g)
        out.append((qk, vo))
    return out


@pytest.mark.parametrize("dim,heads", SHAPES)
def test_vo_product_is_alpha_z_minus_beta_i(dim, heads):
    model = make_vit(dim=dim, heads=heads, depth=2)
    assert len(mimetic_attention_(model, generator=torch.Generator().manual_seed(1))) == 2
    targets = replay_targets(1, 2, heads, dim)
    for layer, (_, vo_target) in zip(attention_products(model), targets):
        vo = layer.vo
        off = vo[~torch.eye(dim, dtype=torch.bool)]
        assert abs(torch.diagonal(vo).mean().item() + 0.4) < 0.03
        assert off.std().item() == pytest.approx(0.4 / math.sqrt(dim), rel=0.15)
        # Exactly the drawn target, not its transpose (Z is not symmetric).
        assert torch.allclose(vo, vo_target, atol=1e-5)
        assert not torch.allclose(vo, vo_target.T, atol=1e-3)
        assert abs(layer.vo_stats["transpose_corr"]) < 0.1


@pytest.mark.parametrize("dim,heads", SHAPES)
def test_qk_products_are_best_rank_k_of_alpha_z_plus_beta_i(dim, heads):
    k = dim // heads
    model = make_vit(dim=dim, heads=heads, depth=2)
    mimetic_attention_(model, generator=torch.Generator().manual_seed(2))
    targets = replay_targets(2, 2, heads, dim)
    for layer, (qk_targets, _) in zip(attention_products(model), targets):
        assert layer.qk.shape == (heads, dim, dim)
        for head, target, stats in zip(layer.qk, qk_targets, layer.qk_stats):
            assert torch.linalg.matrix_rank(head, rtol=1e-9).item() <= k
            expected = best_rank_k(target, k)
            assert torch.allclose(head, expected, atol=1e-5)
            assert stats["diag_mean"] == pytest.approx(torch.diagonal(expected).mean().item(), abs=1e-4)


def test_qk_diagonal_for_vit_tiny_width_is_about_0_39():
    # d=192, k=64: the rank-64 truncation of 0.7 Z + 0.7 I keeps a diagonal of ~0.39, not 0.7.
    model = make_vit(dim=192, heads=3, depth=4)
    mimetic_attention_(model, generator=torch.Generator().manual_seed(0))
    diag = [s["diag_mean"] for layer in attention_products(model) for s in layer.qk_stats]
    assert all(0.33 < v < 0.45 for v in diag), diag
    assert sum(diag) / len(diag) == pytest.approx(0.39, abs=0.03)


def test_default_init_is_far_from_the_mimetic_form():
    model = make_vit(dim=192, heads=3, depth=2)
    for layer in attention_products(model):
        assert abs(layer.vo_stats["diag_mean"]) < 0.05
        assert all(abs(s["diag_mean"]) < 0.05 for s in layer.qk_stats)


def test_only_attention_weights_change():
    model = make_vit(depth=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mimetic_attention_(model, generator=torch.Generator().manual_seed(0))
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {f"blocks.{i}.attn.{n}.weight" for i in range(3) for n in ("qkv", "proj")}


def test_equal_seeds_equal_weights_different_seeds_differ():
    a, b, c = make_vit(seed=0), make_vit(seed=0), make_vit(seed=0)
    mimetic_attention_(a, generator=torch.Generator().manual_seed(7))
    mimetic_attention_(b, generator=torch.Generator().manual_seed(7))
    mimetic_attention_(c, generator=torch.Generator().manual_seed(8))
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    assert not torch.equal(a.blocks[0].attn.qkv.weight, c.blocks[0].attn.qkv.weight)
    assert not torch.equal(a.blocks[0].attn.proj.weight, c.blocks[0].attn.proj.weight)


def test_fresh_noise_per_head_and_per_layer():
    model = make_vit(dim=96, heads=3, depth=2)
    mimetic_attention_(model, generator=torch.Generator().manual_seed(0))
    layers = attention_products(model)
    heads = [h for layer in layers for h in layer.qk]
    for i in range(len(heads)):
        for j in range(i + 1, len(heads)):
            assert not torch.allclose(heads[i], heads[j], atol=1e-3)
    assert not torch.allclose(layers[0].vo, layers[1].vo, atol=1e-3)


@pytest.mark.parametrize("qk,vo", [(False, True), (True, False)])
def test_switches_leave_the_other_product_untouched(qk, vo):
    model = make_vit(dim=96, heads=3, depth=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mimetic_attention_(model, qk=qk, vo=vo, generator=torch.Generator().manual_seed(0))
    for i in range(2):
        qkv_old, qkv_new = before[f"blocks.{i}.attn.qkv.weight"], model.blocks[i].attn.qkv.weight
        assert torch.equal(qkv_new[:192], qkv_old[:192]) != qk  # q and k rows
        assert torch.equal(qkv_new[192:], qkv_old[192:]) != vo  # v rows
        assert torch.equal(model.blocks[i].attn.proj.weight, before[f"blocks.{i}.attn.proj.weight"]) != vo


def test_alpha_beta_are_honoured():
    model = make_vit(dim=128, heads=2, depth=1)
    mimetic_attention_(model, alpha_qk=0.0, beta_qk=1.0, alpha_vo=0.2, beta_vo=0.8,
                       generator=torch.Generator().manual_seed(0))
    layer = attention_products(model)[0]
    # alpha_qk = 0: the target is exactly I, whose best rank-64 approximation is a projection.
    for head in layer.qk:
        assert torch.allclose(head @ head, head, atol=1e-5)
        assert torch.diagonal(head).mean().item() == pytest.approx(0.5, abs=1e-5)
    assert layer.vo_stats["diag_mean"] == pytest.approx(-0.8, abs=0.03)
    assert layer.vo_stats["alpha_hat"] == pytest.approx(0.2, rel=0.15)


def test_multihead_attention_packed_and_batch_first():
    for batch_first in (False, True):
        mha = nn.MultiheadAttention(64, 4, batch_first=batch_first)
        assert len(mimetic_attention_(mha, generator=torch.Generator().manual_seed(0))) == 1
        layer = attention_products(mha)[0]
        assert layer.kind == "torch_mha"
        target = replay_targets(0, 1, 4, 64)[0]
        assert torch.allclose(layer.vo, target[1], atol=1e-5)
        for head, qk_target in zip(layer.qk, target[0]):
            assert torch.allclose(head, best_rank_k(qk_target, 16), atol=1e-5)


def test_multihead_attention_separate_kdim_vdim():
    mha = nn.MultiheadAttention(64, 4, kdim=32, vdim=48)
    assert mha.in_proj_weight is None
    before_bias = mha.in_proj_bias.clone()
    assert len(mimetic_attention_(mha, generator=torch.Generator().manual_seed(0))) == 1
    layer = attention_products(mha)[0]
    assert layer.qk.shape == (4, 64, 32) and layer.vo.shape == (48, 64)
    eye_vo = torch.eye(48, 64, dtype=torch.bool)
    assert layer.vo[eye_vo].mean().item() == pytest.approx(-0.4, abs=0.04)
    for head in layer.qk:
        assert torch.linalg.matrix_rank(head, rtol=1e-9).item() <= 16
        assert torch.diagonal(head).mean().item() > 0.2
    assert torch.equal(mha.in_proj_bias, before_bias)
    # No dead units: every row of the value weights and every column of out_proj is non-zero.
    assert (mha.out_proj.weight.abs().sum(0) > 0).all()


def test_model_with_several_mha_layers():
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(32, 4, 64, batch_first=True), num_layers=3,
                                 enable_nested_tensor=False)
    assert len(mimetic_attention_(model, generator=torch.Generator().manual_seed(0))) == 3
    for layer in attention_products(model):
        assert layer.vo_stats["diag_mean"] == pytest.approx(-0.4, abs=0.06)


def test_errors_are_clear():
    with pytest.raises(InitError, match="no recognised self-attention"):
        mimetic_attention_(nn.Sequential(nn.Linear(4, 4)))
    with pytest.raises(InitError, match="alpha_vo must be a finite number >= 0, got -0.1"):
        mimetic_attention_(make_vit(dim=64, heads=4, depth=1), alpha_vo=-0.1)
    with pytest.raises(InitError, match="beta_qk must be a finite number >= 0, got nan"):
        mimetic_attention_(make_vit(dim=64, heads=4, depth=1), beta_qk=float("nan"))
    model = make_vit(dim=64, heads=4, depth=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.blocks[0].attn.num_heads = 5  # 64 is not divisible by 5
    with pytest.raises(InitError, match="blocks.0.attn .*divisible"):
        mimetic_attention_(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_uses_global_rng_without_generator():
    a, b = make_vit(dim=64, heads=4, depth=1), make_vit(dim=64, heads=4, depth=1)
    torch.manual_seed(3)
    mimetic_attention_(a)
    torch.manual_seed(3)
    mimetic_attention_(b)
    assert torch.equal(a.blocks[0].attn.qkv.weight, b.blocks[0].attn.qkv.weight)

"""attention_products measures what the modules compute (checked against the weights)."""

import pytest
import torch
from conftest import make_vit
from torch import nn

from mimetic.init import attention_products, mimetic_attention_, product_stats, summarize_products


def randomise_(module: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def test_products_match_timm_weights_with_biases():
    model = make_vit(dim=48, heads=3, depth=1)
    randomise_(model)  # non-zero biases too: the probe must cancel them
    attn = model.blocks[0].attn
    w = attn.qkv.weight.detach().double()
    q, k, v = w[:48], w[48:96], w[96:]
    layer = attention_products(model)[0]
    for i in range(3):
        rows = slice(16 * i, 16 * (i + 1))
        assert torch.allclose(layer.qk[i], q[rows].T @ k[rows], atol=1e-8)
    assert torch.allclose(layer.vo, v.T @ attn.proj.weight.detach().double().T, atol=1e-8)


def test_products_match_multihead_attention_weights():
    mha = nn.MultiheadAttention(24, 2, kdim=12, vdim=20, bias=True)
    randomise_(mha, seed=1)
    layer = attention_products(mha)[0]
    q, k, v = (t.detach().double() for t in (mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight))
    for i in range(2):
        rows = slice(12 * i, 12 * (i + 1))
        assert torch.allclose(layer.qk[i], q[rows].T @ k[rows], atol=1e-8)
    assert torch.allclose(layer.vo, v.T @ mha.out_proj.weight.detach().double().T, atol=1e-8)


def test_probe_leaves_the_model_untouched():
    model = make_vit(dim=48, heads=3, depth=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    attention_products(model)
    assert model.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(b.attn.qkv.weight.dtype == torch.float32 for b in model.blocks)


def test_stats_of_a_known_matrix():
    g = torch.Generator().manual_seed(0)
    d = 256
    z = torch.randn(d, d, generator=g, dtype=torch.float64) / d**0.5
    p = 0.3 * z - 0.5 * torch.eye(d, dtype=torch.float64)
    s = product_stats(p, target_beta=-0.5)
    assert s["diag_mean"] == pytest.approx(-0.5, abs=0.03)
    assert s["alpha_hat"] == pytest.approx(0.3, rel=0.05)
    assert s["identity_rel_err"] == pytest.approx(0.3 / (0.3**2 + 0.5**2) ** 0.5, rel=0.05)
    assert s["target_rel_err"] == pytest.approx(0.6, rel=0.05)
    assert abs(s["transpose_corr"]) < 0.05
    assert product_stats(p + p.T)["transpose_corr"] > 0.99
    assert s["rank"] == d


def test_summary_is_json_ready():
    import json

    model = make_vit(dim=48, heads=3, depth=2)
    mimetic_attention_(model, generator=torch.Generator().manual_seed(0))
    summary = summarize_products(attention_products(model))
    text = json.dumps(summary)
    assert len(summary["layers"]) == 2
    assert summary["mean"]["vo_diag_mean"] == pytest.approx(-0.4, abs=0.05)
    assert "qk_diag_mean" in text

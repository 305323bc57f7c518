"""init=mimetic_simple (W_k = W_q, W_v = -c W_o^T) and init=vo_nonzero (mimetic's VO size, no -I), measured
through the real forward (attention_products pushes basis vectors through each module)."""

import dataclasses
import json

import pytest
import torch
from conftest import make_vit
from test_init_lm_adapters import CausalSelfAttention, GPT2Model, LlamaAttention, gpt2_config, llama_config
from torch import nn

from mimetic.init import (
    INITS,
    InitError,
    apply_init,
    attention_products,
    diagnose_init,
    find_attention_layers,
    mimetic_attention_,
    mimetic_simple_,
    state_snapshot,
    vo_nonzero_,
)
from mimetic.models import DataSpec, build_model
from mimetic.models.gpt import GPTMicro


def weights(model):
    """Per attention layer, float64 copies of (W_q, W_k, W_v, W_o) in the (out, in) convention."""
    return [tuple(w().detach().to(torch.float64).clone() for w in (a.q_weight, a.k_weight, a.v_weight, a.o_weight))
            for a in find_attention_layers(model)]


def assert_simple_products(model, before, c=None, balanced=False):
    """QK per head = W_q^h^T W_q^h of the original W_q (PSD); VO = -c W_o W_o^T of the original W_o."""
    for layer, (q, _, _, o) in zip(attention_products(model), before):
        heads, hd = layer.qk.shape[0], q.shape[0] // layer.qk.shape[0]
        for h in range(heads):
            expected = q[h * hd:(h + 1) * hd].T @ q[h * hd:(h + 1) * hd]
            assert torch.allclose(layer.qk[h], expected, atol=1e-4 * expected.abs().max().item())  # float32 probes
            sym = (layer.qk[h] + layer.qk[h].T) / 2
            assert torch.linalg.eigvalsh(sym).min() > -1e-4 * expected.abs().max()  # PSD (up to probe noise)
            assert layer.qk_stats[h]["diag_mean"] > 0
        c_used = c if c is not None else 0.4 * o.shape[0] / o.pow(2).sum()
        expected_vo = -c_used * o @ o.T
        assert torch.allclose(layer.vo, expected_vo, atol=1e-4 * expected_vo.abs().max().item())
        assert torch.linalg.eigvalsh((layer.vo + layer.vo.T) / 2).max() < 1e-4 * expected_vo.abs().max()  # -c x PSD
        if c is None:
            assert layer.vo_stats["diag_mean"] == pytest.approx(-0.4, abs=1e-4)


def test_mimetic_simple_on_a_timm_vit_sets_only_keys_and_values():
    model = make_vit(dim=96, heads=3, depth=2)
    before_state, before = state_snapshot(model), weights(model)
    report = mimetic_simple_(model, c=None)  # matched: per layer, the VO mean diagonal is mimetic's -0.4
    assert [r["c"] for r in report] == pytest.approx([0.4 * 96 / w[3].pow(2).sum().item() for w in before])
    assert [r["c"] for r in mimetic_simple_(make_vit(dim=96, heads=3, depth=2))] == [16.0, 16.0]  # the default
    assert_simple_products(model, before)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before_state[k])}
    assert changed == {f"blocks.{i}.attn.qkv.weight" for i in range(2)}  # proj, biases, the rest: untouched
    for i in range(2):
        qkv, old = model.blocks[i].attn.qkv.weight, before_state[f"blocks.{i}.attn.qkv.weight"]
        assert torch.equal(qkv[:96], old[:96])  # queries kept
        assert torch.equal(qkv[96:192], old[:96])  # keys = queries, row block for row block


def test_fixed_c_and_the_balanced_split_give_the_same_product():
    a, b = make_vit(dim=64, heads=2, depth=2), make_vit(dim=64, heads=2, depth=2)
    before = weights(a)
    mimetic_simple_(a, c=2.0)
    mimetic_simple_(b, c=2.0, balanced=True)
    assert_simple_products(a, before, c=2.0)
    assert_simple_products(b, before, c=2.0)
    for layer in find_attention_layers(b):  # balanced: value and output factors of equal size
        assert layer.v_weight().norm().item() == pytest.approx(layer.o_weight().norm().item(), rel=1e-5)


def test_mimetic_simple_on_multihead_attention_gpt_and_hf_style_layers():
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(d_model=32, nhead=4, batch_first=True), num_layers=2)
    gpt = build_model(GPTMicro(name="gpt_micro"), DataSpec("language_modeling", vocab_size=64))
    hf = GPT2Model(gpt2_config(), layers=2)
    nano = nn.ModuleList([CausalSelfAttention()])
    llama = nn.ModuleList([LlamaAttention(llama_config())])
    for model in (encoder, gpt, hf, nano, llama):
        before = weights(model)
        assert len(mimetic_simple_(model, c=0.5)) == len(before)
        assert_simple_products(model, before, c=0.5)


def test_mimetic_simple_refuses_rectangular_and_grouped_query_layouts_and_writes_nothing():
    cases = [
        (nn.ModuleList([nn.MultiheadAttention(32, 4, kdim=16, vdim=16)]), "keys shaped like queries"),
        (nn.ModuleList([nn.MultiheadAttention(32, 4, vdim=16, kdim=32)]), "value weight shaped like"),
        (nn.ModuleList([LlamaAttention(llama_config(num_key_value_heads=2))]), "grouped-query"),
    ]
    for model, message in cases:
        before = state_snapshot(model)
        with pytest.raises(InitError, match=message):
            mimetic_simple_(model)
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    for bad in (0, -1.0, float("nan"), "x"):
        with pytest.raises(InitError, match="c must be a finite number > 0"):
            mimetic_simple_(make_vit(dim=48, heads=3, depth=1), c=bad)
    assert INITS.get("mimetic_simple").schema(name="mimetic_simple", c=-2).problems("init") == [
        "init.c must be a finite number > 0 (or null: match mimetic's VO diagonal -0.4), got -2"]


def test_vo_nonzero_has_mimetics_singular_values_and_no_diagonal():
    seed = 3
    control, reference = make_vit(dim=96, heads=3, depth=3), make_vit(dim=96, heads=3, depth=3)
    before_state = state_snapshot(control)
    g1, g2 = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
    report = vo_nonzero_(control, generator=g1)
    mimetic_attention_(reference, qk=False, generator=g2)
    # The same Z in every layer (the caller's stream is not shifted by the rotations): equal spectra.
    assert torch.equal(g1.get_state(), g2.get_state())
    for ours, theirs, rec in zip(attention_products(control), attention_products(reference), report):
        s_ours, s_theirs = torch.linalg.svdvals(ours.vo), torch.linalg.svdvals(theirs.vo)
        assert torch.allclose(s_ours, s_theirs, rtol=1e-6, atol=1e-7)
        assert torch.linalg.norm(ours.vo).item() == pytest.approx(torch.linalg.norm(theirs.vo).item(), rel=1e-6)
        assert rec["fro_norm"] == pytest.approx(rec["mimetic_fro_norm"], rel=1e-12)
        assert abs(ours.vo_stats["diag_mean"]) < 0.03
        assert theirs.vo_stats["diag_mean"] == pytest.approx(-0.4, abs=0.03)
        assert ours.vo_stats["identity_rel_err"] > 0.99  # nothing of it is a multiple of I
    changed = {k for k, v in control.state_dict().items() if not torch.equal(v, before_state[k])}
    assert changed == {f"blocks.{i}.attn.{n}.weight" for i in range(3) for n in ("qkv", "proj")}
    for i in range(3):  # queries and keys keep the model's init
        assert torch.equal(control.blocks[i].attn.qkv.weight[:192], before_state[f"blocks.{i}.attn.qkv.weight"][:192])


def test_vo_nonzero_gaussian_form_matches_the_norm_and_seeds_reproduce():
    a, b, c = make_vit(dim=64, heads=2, depth=2), make_vit(dim=64, heads=2, depth=2), make_vit(dim=64, heads=2, depth=2)
    vo_nonzero_(a, form="gaussian", generator=torch.Generator().manual_seed(1))
    vo_nonzero_(b, form="gaussian", generator=torch.Generator().manual_seed(1))
    mimetic_attention_(c, qk=False, generator=torch.Generator().manual_seed(1))
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key])
    for ours, theirs in zip(attention_products(a), attention_products(c)):
        assert torch.linalg.norm(ours.vo).item() == pytest.approx(torch.linalg.norm(theirs.vo).item(), rel=1e-6)
        assert abs(ours.vo_stats["diag_mean"]) < 0.03
    with pytest.raises(InitError, match="form must be one of"):
        vo_nonzero_(a, form="diagonal")


def test_vo_nonzero_on_multihead_attention():
    encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(d_model=32, nhead=4, batch_first=True), num_layers=2)
    vo_nonzero_(encoder, generator=torch.Generator().manual_seed(0))
    for layer in attention_products(encoder):
        assert abs(layer.vo_stats["diag_mean"]) < 0.06
        assert torch.linalg.norm(layer.vo).item() == pytest.approx((0.4**2 * 32 + 0.4**2 * 32) ** 0.5, rel=0.2)


@pytest.mark.parametrize("name", ["mimetic_simple", "vo_nonzero"])
def test_registered_and_diagnosed(name):
    keys = {"mimetic_simple": {"c", "balanced"}, "vo_nonzero": {"form", "alpha_vo", "beta_vo", "solver"}}[name]
    schema = INITS.get(name).schema
    assert {f.name for f in dataclasses.fields(schema)} - {"name"} == keys
    model = make_vit(dim=48, heads=3, depth=2)
    before = state_snapshot(model)
    report = apply_init(model, {"name": name}, torch.Generator().manual_seed(0))
    diagnostics = diagnose_init(model, {"name": name}, before)
    json.dumps(report), json.dumps(diagnostics)
    assert report["layers"] == 2 and diagnostics["changed_tensors"]
    vo_diag = diagnostics["attention"]["mean"]["vo_diag_mean"]
    if name == "mimetic_simple":  # default c = 16: the VO product -16 W_o W_o^T has mean diagonal -16 ||W_o||^2 / d
        expected = sum(-16.0 * before[f"blocks.{i}.attn.proj.weight"].pow(2).sum().item() / 48 for i in range(2)) / 2
        assert vo_diag == pytest.approx(expected, rel=1e-3)
    else:
        assert abs(vo_diag) < 0.05

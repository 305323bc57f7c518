"""The GPT: causal masking, tied embeddings, and mimetic init (with either sign pattern) measured on it."""

import pytest
import torch

from mimetic.init import attention_products, diagnose_init, identity_plus_noise, mimetic_attention_, state_snapshot
from mimetic.init.attention import MimeticOptions
from mimetic.init.dispatch import apply_init
from mimetic.models import DataSpec, build_model
from mimetic.models.gpt import GPTMicro

SPEC = DataSpec("language_modeling", vocab_size=97)


def gpt(seed=0, **kw):
    torch.manual_seed(seed)
    return build_model(GPTMicro(name="gpt_micro", dim=48, depth=2, heads=3, block_size=16, **kw), SPEC).eval()


def best_rank_k(target: torch.Tensor, k: int) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(target)
    return (u[:, :k] * s[:k]) @ vh[:k]


def test_a_later_token_never_changes_an_earlier_position():
    model = gpt()
    mimetic_attention_(model, generator=torch.Generator().manual_seed(0))  # sharper attention: a stricter test
    x = torch.randint(0, 97, (2, 16))
    for t in (0, 5, 15):
        y = x.clone()
        y[:, t] = (y[:, t] + 1) % 97
        a, b = model(x), model(y)
        assert torch.equal(a[:, :t], b[:, :t])
        assert not torch.allclose(a[:, t:], b[:, t:])


def test_shapes_tied_embeddings_and_context_limit():
    model = gpt(dropout=0.1, attn_dropout=0.1)
    assert model(torch.randint(0, 97, (3, 7))).shape == (3, 7, 97)
    assert model.lm_head.weight is model.wte.weight
    with pytest.raises(ValueError, match="longer than model.block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    problems = GPTMicro(name="gpt_micro", dim=50, heads=3).problems("model")
    assert problems == ["model.heads=3 does not divide model.dim=50"]


@pytest.mark.parametrize("sign_qk,sign_vo", [(1, -1), (-1, 1)])
def test_mimetic_products_measured_through_the_causal_forward(sign_qk, sign_vo):
    model = gpt()
    before = state_snapshot(model)
    report = apply_init(model, MimeticOptions(name="mimetic", sign_qk=sign_qk, sign_vo=sign_vo),
                        torch.Generator().manual_seed(5))
    assert report["layers"] == 2 and report["sign_qk"] == sign_qk and report["sign_vo"] == sign_vo
    g = torch.Generator().manual_seed(5)
    layers = attention_products(model)  # tokens pushed through the real (causal, sdpa) modules
    for layer in layers:
        assert layer.kind == "gpt_c_attn"
        for head in layer.qk:
            target = identity_plus_noise(48, 48, alpha=0.7, beta=sign_qk * 0.7, generator=g)
            assert torch.allclose(head, best_rank_k(target, 16), atol=1e-5)
        vo = identity_plus_noise(48, 48, alpha=0.4, beta=sign_vo * 0.4, generator=g)
        assert torch.allclose(layer.vo, vo, atol=1e-5)
    diagnostics = diagnose_init(model, MimeticOptions(name="mimetic", sign_qk=sign_qk, sign_vo=sign_vo), before)
    mean = diagnostics["attention"]["mean"]
    assert mean["vo_diag_mean"] == pytest.approx(sign_vo * 0.4, abs=0.1)
    assert mean["qk_diag_mean"] * sign_qk > 0
    assert set(diagnostics["changed_tensors"]) == {f"h.{i}.attn.{n}.weight" for i in range(2)
                                                   for n in ("c_attn", "c_proj")}


def test_default_signs_are_the_vision_ones_bit_for_bit(vit_factory):
    a, b = vit_factory(seed=1), vit_factory(seed=1)
    mimetic_attention_(a, generator=torch.Generator().manual_seed(2))
    mimetic_attention_(b, generator=torch.Generator().manual_seed(2), sign_qk=1, sign_vo=-1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert MimeticOptions().sign_qk == 1 and MimeticOptions().sign_vo == -1


def test_a_sign_other_than_plus_or_minus_one_is_refused():
    assert MimeticOptions(name="mimetic", sign_vo=0).problems("init") == [
        "init.sign_vo must be 1 or -1 (the sign of the identity term of its target), got 0"]
    with pytest.raises(ValueError, match="sign_qk must be 1 or -1"):
        mimetic_attention_(gpt(), sign_qk=2)

"""The library refuses attention it cannot initialise, naming the module and why, and writes nothing.

Real timm classes throughout: each variant below would otherwise receive weights whose
products are not the ones its forward computes.
"""

import pytest
import torch
from conftest import make_vit
from timm.layers import Attention
from timm.models.cait import Cait
from timm.models.xcit import Xcit
from torch import nn

from mimetic.errors import MimeticError
from mimetic.init import (
    InitError,
    attention_products,
    mimetic_attention_,
    register_non_attention,
    scan_attention,
)
from mimetic.init import layers as layers_module


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_untouched(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def refuse(model: nn.Module, *patterns: str) -> str:
    """mimetic_attention_ must raise InitError matching every pattern, and leave the model as it was."""
    before = state(model)
    with pytest.raises(InitError) as info:
        mimetic_attention_(model, generator=torch.Generator().manual_seed(0))
    text = str(info.value)
    for pattern in patterns:
        assert pattern in text, (pattern, text)
    assert_untouched(model, before)
    return text


def tiny_xcit() -> Xcit:
    torch.manual_seed(0)
    return Xcit(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, cls_attn_layers=1, num_classes=10)


def tiny_cait() -> Cait:
    torch.manual_seed(0)
    return Cait(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, depth_token_only=1, num_classes=10)


def test_qk_norm_vit_is_refused():
    model = make_vit(dim=32, heads=2, depth=2, img=16, qk_norm=True)
    refuse(model, "blocks.0.attn, blocks.1.attn (Attention)", "qk_norm=True", "Nothing was changed")
    with pytest.raises(InitError, match="qk_norm"):
        attention_products(model)  # what it would measure is not a product either


def test_scale_norm_vit_is_refused():
    refuse(make_vit(dim=32, heads=2, depth=1, img=16, scale_attn_norm=True), "blocks.0.attn", "scale_norm=True")


def test_gated_timm_attention_is_refused():
    torch.manual_seed(0)
    refuse(Attention(32, num_heads=2, gated=True), "gated attention")


def test_xcit_cross_covariance_and_class_attention_are_refused():
    text = refuse(tiny_xcit(), "blocks.0.attn, blocks.1.attn (XCA)", "cross-covariance")
    # Its class-attention layers are claimed by no adapter: listed, with how to add one.
    assert "cls_attn_blocks.0.attn (ClassAttn)" in text
    assert "register_attention_adapter" in text


def test_cait_talking_heads_and_class_attention_are_refused():
    text = refuse(tiny_cait(), "blocks.0.attn, blocks.1.attn (TalkingHeadAttn)", "talking-heads")
    assert "blocks_token_only.0.attn (ClassAttn)" in text
    # The container block (LayerScaleBlockClassAttn) is not reported, only the attention inside it.
    assert "LayerScaleBlockClassAttn" not in text


def test_unrecognised_attention_is_not_skipped_when_others_are_found():
    # A ViT with an attention-pooling head: 2 supported layers plus one no adapter claims.
    model = make_vit(dim=32, heads=2, depth=2, img=16, global_pool="map")
    scan = scan_attention(model)
    assert [layer.name for layer in scan.layers] == ["blocks.0.attn", "blocks.1.attn"]
    assert scan.unrecognised == [("attn_pool", "AttentionPoolLatent")]
    refuse(model, "attn_pool (AttentionPoolLatent)", "register_attention_adapter", "register_non_attention")


def test_register_non_attention_takes_a_module_off_the_list(monkeypatch):
    monkeypatch.setattr(layers_module, "NON_ATTENTION", set(layers_module.NON_ATTENTION))
    model = make_vit(dim=32, heads=2, depth=1, img=16, global_pool="map")
    register_non_attention(type(model.attn_pool))
    assert len(mimetic_attention_(model, generator=torch.Generator().manual_seed(0))) == 1


class SneakyAttention(nn.Module):
    """Looks exactly like timm's Attention to the adapter, but squashes the values (listed nowhere)."""

    def __init__(self, dim: int = 32, num_heads: int = 2):
        super().__init__()
        self.num_heads, self.head_dim, self.scale = num_heads, dim // num_heads, (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = nn.Dropout(0.0)
        self.proj = nn.Linear(dim, dim)
        self.fused_attn = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attn = self.attn_drop((q @ k.transpose(-2, -1) * self.scale).softmax(-1))
        return self.proj((attn @ torch.tanh(v)).transpose(1, 2).reshape(b, n, c))


def test_unlisted_lookalike_is_caught_by_the_probe():
    torch.manual_seed(0)
    text = refuse(nn.Sequential(SneakyAttention()), "0 (SneakyAttention)", "does not come out as x W_v^T W_o^T")
    assert "relative difference" in text


class ScaledLogitsAttention(SneakyAttention):
    """Another look-alike: doubles the logits behind the adapter's back (the scale it reports is wrong)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attn = self.attn_drop((2 * q @ k.transpose(-2, -1) * self.scale).softmax(-1))
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


def test_wrong_logit_scale_is_caught_by_the_probe():
    torch.manual_seed(0)
    refuse(nn.Sequential(ScaledLogitsAttention()), "attention logits its forward computes are not")


def test_meta_device_model_is_refused_not_counted():
    with torch.device("meta"):
        model = make_vit(dim=32, heads=2, depth=2, img=16)
    with pytest.raises(InitError, match="blocks.0.attn, blocks.1.attn .*meta device.*to_empty"):
        mimetic_attention_(model)
    with pytest.raises(InitError, match="meta device"):
        mimetic_attention_(nn.MultiheadAttention(16, 2, device="meta"))


def test_mha_with_extra_key_value_is_refused():
    refuse(nn.MultiheadAttention(16, 2, add_bias_kv=True), "add_bias_kv")


def test_model_without_attention_gets_a_clear_error():
    from timm.models.convmixer import ConvMixer

    model = ConvMixer(dim=32, depth=2, kernel_size=3, patch_size=4, num_classes=10)
    refuse(model, "ConvMixer has no recognised self-attention layer", "init=default")


def test_channel_attention_is_not_mistaken_for_self_attention():
    from timm.layers.cbam import CbamModule

    model = nn.Sequential(nn.Conv2d(3, 16, 3), CbamModule(16), nn.Flatten(), nn.LazyLinear(4))
    scan = scan_attention(model)
    assert scan.ok and not scan.layers


def test_init_error_is_one_user_facing_message_type():
    assert issubclass(InitError, MimeticError) and issubclass(InitError, ValueError)
    with pytest.raises(MimeticError):
        mimetic_attention_(tiny_cait())


@pytest.mark.parametrize("variant", ["qk_norm", "scale_norm", "gated", "xcit", "cait"])
def test_the_probe_alone_catches_every_listed_variant(monkeypatch, variant):
    # Backstop for variants nobody lists: with the named checks off, the random-token probe
    # of the real forward still refuses each of them.
    monkeypatch.setattr(layers_module.TimmFusedAttention, "unsupported_reason", lambda self: None)
    build = {
        "qk_norm": lambda: make_vit(dim=32, heads=2, depth=1, img=16, qk_norm=True),
        "scale_norm": lambda: make_vit(dim=32, heads=2, depth=1, img=16, scale_attn_norm=True),
        "gated": lambda: Attention(32, num_heads=2, gated=True),
        "xcit": tiny_xcit,
        "cait": tiny_cait,
    }[variant]
    scan = scan_attention(build())
    assert scan.unsupported and not scan.layers
    assert all(("W_q^T W_k" in why or "W_v^T W_o^T" in why or "shape" in why) for _, _, why in scan.unsupported)

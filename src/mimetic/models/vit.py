"""The paper's ViTs, built with timm (a library, never a fork), and registered two ways:

* in the project's model registry (``model=vit_tiny`` / ``model=vit_micro``), with their
  typed schema below — the one place the variants' sizes are written;
* with timm's ``register_model``, so a notebook can do
  ``import mimetic.models; timm.create_model("mimetic_vit_tiny_patch2_32", num_classes=10)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer

from mimetic.models.base import MODELS, DataSpec, ModelOption, timm_entry
from mimetic.models.pos_embed import use_fixed_sincos_pos_embed_

POOLINGS = {"token": "token", "mean": "avg"}  # our names -> timm's global_pool
POS_EMBEDS = ("sincos", "learned")


@dataclass
class ViTTiny(ModelOption):
    """The paper's ViT-Tiny for 32x32 inputs (SPEC §5): 256 patch tokens + class token."""

    dim: int = 192
    depth: int = 12
    heads: int = 3
    mlp_ratio: float = 4.0
    patch_size: int = 2
    img_size: int = 32
    pooling: str = "token"  # token (class token, the paper's) | mean (global average pooling)
    pos_embed: str = "sincos"  # sincos (fixed 2-D, the paper's) | learned
    drop_path: float = 0.0

    @property
    def input_size(self) -> int:
        return self.img_size

    def problems(self, group: str) -> list[str]:
        g, out = group, []
        if not (self.dim > 0 and self.depth > 0 and self.heads > 0):
            out.append(f"{g}.dim, {g}.depth and {g}.heads must be > 0")
        elif self.dim % self.heads:
            out.append(f"{g}.heads={self.heads} does not divide {g}.dim={self.dim}")
        if self.pos_embed == "sincos" and self.dim > 0 and self.dim % 4:
            out.append(f"{g}.dim={self.dim}: the fixed 2-D sin-cos position embedding needs a width divisible "
                       f"by 4 (use e.g. {g}.dim={max(4, self.dim // 4 * 4)}, or {g}.pos_embed=learned)")
        if not (self.patch_size > 0 and self.img_size > 0):
            out.append(f"{g}.patch_size and {g}.img_size must be > 0")
        elif self.img_size % self.patch_size:
            out.append(f"{g}.patch_size={self.patch_size} does not divide {g}.img_size={self.img_size}")
        if not self.mlp_ratio > 0:
            out.append(f"{g}.mlp_ratio must be > 0, got {self.mlp_ratio}")
        if not 0 <= self.drop_path < 1:
            out.append(f"{g}.drop_path must be in [0, 1), got {self.drop_path}")
        if self.pooling not in POOLINGS:
            out.append(f"{g}.pooling={self.pooling!r} is not one of: {', '.join(POOLINGS)}")
        if self.pos_embed not in POS_EMBEDS:
            out.append(f"{g}.pos_embed={self.pos_embed!r} is not one of: {', '.join(POS_EMBEDS)}")
        return out


@dataclass
class ViTMicro(ViTTiny):
    """A CPU-sized ViT: 64 patch tokens + class token. Width 64 (not 96) trains ~1.8x faster on 2 cores."""

    dim: int = 64
    depth: int = 6
    heads: int = 2
    patch_size: int = 4


def build_vit(cfg: ViTTiny, spec: DataSpec, **timm_kwargs: Any) -> VisionTransformer:
    """A timm ``VisionTransformer`` from a ViT option.

    ``pooling=token`` gives a class token; ``pooling=mean`` drops it and averages the
    patch tokens. ``pos_embed=sincos`` fixes the embedding (a buffer), ``learned`` keeps
    timm's trainable one.
    """
    problems = cfg.problems("model")
    if problems:
        raise ValueError("; ".join(problems))
    model = VisionTransformer(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        in_chans=spec.in_chans,
        num_classes=spec.num_classes,
        global_pool=POOLINGS[cfg.pooling],
        class_token=cfg.pooling == "token",
        embed_dim=cfg.dim,
        depth=cfg.depth,
        num_heads=cfg.heads,
        mlp_ratio=cfg.mlp_ratio,
        qkv_bias=True,
        drop_path_rate=cfg.drop_path,
        **timm_kwargs,
    )
    if cfg.pos_embed == "sincos":
        use_fixed_sincos_pos_embed_(model)
    return model


MODELS.add("vit_tiny", ViTTiny, build_vit, help="the paper's ViT-Tiny/2 for 32 px inputs")
MODELS.add("vit_micro", ViTMicro, build_vit, help="CPU-sized ViT (dim 64, depth 6, 2 heads, patch 4)")


def _timm_entry(option: ViTTiny, pretrained: bool, kwargs: dict) -> VisionTransformer:
    return timm_entry(option, build_vit, pretrained, kwargs)


@register_model
def mimetic_vit_tiny_patch2_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """The paper's CIFAR ViT-Tiny (dim 192, depth 12, 3 heads, patch 2, fixed sin-cos PE, class token)."""
    return _timm_entry(ViTTiny(name="vit_tiny"), pretrained, kwargs)


@register_model
def mimetic_vit_micro_patch4_32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """The CPU proxy ViT (dim 64, depth 6, 2 heads, patch 4, fixed sin-cos PE, class token)."""
    return _timm_entry(ViTMicro(name="vit_micro"), pretrained, kwargs)

"""ViT-Tiny at the sizes of the larger datasets: the same model as the CIFAR one (vit.py), other inputs.

* ``vit_tiny_p4_64``: Tiny ImageNet, 64 px / patch 4 -> 256 patch tokens + class token, as
  the paper's CIFAR ViT-Tiny/2 at 32 px (SPEC §5 leaves Tiny ImageNet's resolution open;
  64 px / patch 4 is the common choice).
* ``vit_tiny_p16_224``: ImageNet, ViT-Tiny/16 at 224 px (196 patch tokens + class token),
  the size of DeiT-Ti and timm's ``vit_tiny_patch16_224``.

Both keep the paper's width 192, depth 12, 3 heads, MLP ratio 4, class token and fixed
2-D sin-cos position embedding, so an ``init=mimetic`` result compares across datasets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer

from mimetic.models.base import MODELS
from mimetic.models.vit import ViTTiny, _timm_entry, build_vit


@dataclass
class ViTTinyP4At64(ViTTiny):
    """ViT-Tiny/4 for 64 px inputs (Tiny ImageNet): 256 patch tokens + class token."""

    patch_size: int = 4
    img_size: int = 64


@dataclass
class ViTTinyP16At224(ViTTiny):
    """ViT-Tiny/16 for 224 px inputs (ImageNet): 196 patch tokens + class token."""

    patch_size: int = 16
    img_size: int = 224


MODELS.add("vit_tiny_p4_64", ViTTinyP4At64, build_vit, help="ViT-Tiny/4 at 64 px (Tiny ImageNet)")
MODELS.add("vit_tiny_p16_224", ViTTinyP16At224, build_vit, help="ViT-Tiny/16 at 224 px (ImageNet)")


@register_model
def mimetic_vit_tiny_patch4_64(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Tiny/4 at 64 px (dim 192, depth 12, 3 heads, fixed sin-cos PE, class token)."""
    return _timm_entry(ViTTinyP4At64(name="vit_tiny_p4_64"), pretrained, kwargs)


@register_model
def mimetic_vit_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-Tiny/16 at 224 px (dim 192, depth 12, 3 heads, fixed sin-cos PE, class token)."""
    return _timm_entry(ViTTinyP16At224(name="vit_tiny_p16_224"), pretrained, kwargs)

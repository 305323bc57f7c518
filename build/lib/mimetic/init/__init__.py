"""Mimetic initialization as a library: apply it to your own model.

    import torch, timm
    from mimetic.init import mimetic_attention_
    model = timm.create_model("vit_tiny_patch16_224", num_classes=10)
    mimetic_attention_(model, generator=torch.Generator().manual_seed(0))
"""

from mimetic.init.attention import mimetic_attention_
from mimetic.init.diagnostics import LayerProducts, attention_products, product_stats, summarize_products
from mimetic.init.dispatch import INIT_NAMES, apply_init
from mimetic.init.factorize import balanced_factors, identity_plus_noise
from mimetic.init.layers import AttentionAdapter, find_attention_layers
from mimetic.init.pretrained import pretrained_attention_

__all__ = [
    "INIT_NAMES",
    "AttentionAdapter",
    "LayerProducts",
    "apply_init",
    "attention_products",
    "balanced_factors",
    "find_attention_layers",
    "identity_plus_noise",
    "mimetic_attention_",
    "pretrained_attention_",
    "product_stats",
    "summarize_products",
]

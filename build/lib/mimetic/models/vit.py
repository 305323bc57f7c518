"""The paper's ViTs, built with timm (a library, never a fork)."""

from __future__ import annotations

from typing import Any

from timm.models.vision_transformer import VisionTransformer

from mimetic.models.pos_embed import use_fixed_sincos_pos_embed_

POOLINGS = {"token": "token", "mean": "avg"}  # our names -> timm's global_pool
POS_EMBEDS = ("sincos", "learned")


def build_vit(cfg: Any, num_classes: int) -> VisionTransformer:
    """A timm ``VisionTransformer`` from a model config (see ``configs/model/vit_tiny.yaml``).

    ``pooling=token`` gives a class token; ``pooling=mean`` drops it and averages the
    patch tokens. ``pos_embed=sincos`` fixes the embedding (a buffer), ``learned`` keeps
    timm's trainable one.
    """
    if cfg.pooling not in POOLINGS:
        raise ValueError(f"model.pooling must be one of {sorted(POOLINGS)}, got {cfg.pooling!r}")
    if cfg.pos_embed not in POS_EMBEDS:
        raise ValueError(f"model.pos_embed must be one of {list(POS_EMBEDS)}, got {cfg.pos_embed!r}")
    model = VisionTransformer(
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        in_chans=3,
        num_classes=num_classes,
        global_pool=POOLINGS[cfg.pooling],
        class_token=cfg.pooling == "token",
        embed_dim=cfg.dim,
        depth=cfg.depth,
        num_heads=cfg.heads,
        mlp_ratio=cfg.mlp_ratio,
        qkv_bias=True,
        drop_path_rate=cfg.drop_path,
    )
    if cfg.pos_embed == "sincos":
        use_fixed_sincos_pos_embed_(model)
    return model

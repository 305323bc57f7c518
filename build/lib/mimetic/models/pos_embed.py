"""Fixed 2-D sin-cos position embeddings for timm ViTs (the paper's precondition).

Mimetic QK init makes step-0 attention lean on ``P P^T``; with 2-D sin-cos embeddings
that matrix peaks at each patch's own position and falls off with grid distance, so
fresh attention is already local, as in trained ViTs.
"""

from __future__ import annotations

import torch
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models.vision_transformer import VisionTransformer


def sincos_2d_table(grid_hw: tuple[int, int], dim: int, num_prefix_tokens: int) -> torch.Tensor:
    """(1, prefix + H*W, dim): zero rows for the class/register tokens, then the grid row-major.

    The grid order matches timm's patch flattening (row by row); the class token gets a
    zero embedding (as in MAE) because it has no position.
    """
    grid = build_sincos2d_pos_embed(list(grid_hw), dim=dim)  # (H*W, dim), row-major
    prefix = torch.zeros(num_prefix_tokens, dim, dtype=grid.dtype)
    return torch.cat([prefix, grid])[None]


def use_fixed_sincos_pos_embed_(model: VisionTransformer) -> None:
    """Replace the learned ``pos_embed`` parameter of a timm ViT with a fixed sin-cos buffer.

    As a (persistent) buffer it stays in ``state_dict`` under the same key, moves with
    ``.to()``, and is never seen by the optimizer.
    """
    if getattr(model, "pos_embed", None) is None:
        raise ValueError("the model has no pos_embed to replace (built with pos_embed='none'?)")
    if getattr(model, "dynamic_img_size", False):
        raise ValueError("fixed sin-cos embeddings here assume a fixed grid; build the ViT with dynamic_img_size=False")
    prefix = 0 if model.no_embed_class else model.num_prefix_tokens
    table = sincos_2d_table(tuple(model.patch_embed.grid_size), model.embed_dim, prefix)
    old = model.pos_embed
    if tuple(old.shape) != tuple(table.shape):
        raise ValueError(f"pos_embed shape {tuple(old.shape)} != sin-cos table {tuple(table.shape)}")
    del model.pos_embed
    model.register_buffer("pos_embed", table.to(device=old.device, dtype=old.dtype), persistent=True)

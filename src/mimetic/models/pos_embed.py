"""Fixed 2-D sin-cos position embeddings for timm ViTs (the paper's precondition).

Mimetic QK init makes step-0 attention lean on ``P P^T``; with 2-D sin-cos embeddings
that matrix peaks at each patch's own position and falls off with grid distance, so
fresh attention is already local, as in trained ViTs.
"""

from __future__ import annotations

import torch
from timm.layers.pos_embed_sincos import build_sincos2d_pos_embed
from timm.models.vision_transformer import VisionTransformer
from torch import nn


def sincos_2d_table(grid_hw: tuple[int, int], dim: int, num_prefix_tokens: int) -> torch.Tensor:
    """(1, prefix + H*W, dim): zero rows for the class/register tokens, then the grid row-major.

    The grid order matches timm's patch flattening (row by row); the class token gets a
    zero embedding (as in MAE) because it has no position.
    """
    grid = build_sincos2d_pos_embed(list(grid_hw), dim=dim)  # (H*W, dim), row-major
    prefix = torch.zeros(num_prefix_tokens, dim, dtype=grid.dtype)
    return torch.cat([prefix, grid])[None]


def use_fixed_sincos_pos_embed_(model: nn.Module) -> None:
    """Replace the learned position embedding of a timm ViT (``pos_embed``) or a torchvision one
    (``encoder.pos_embedding``, the class token's row first) with a fixed sin-cos buffer.

    As a (persistent) buffer it stays in ``state_dict`` under the same key, moves with
    ``.to()``, and is never seen by the optimizer.
    """
    if isinstance(model, VisionTransformer):
        if getattr(model, "pos_embed", None) is None:
            raise ValueError("the model has no pos_embed to replace (built with pos_embed='none'?)")
        if getattr(model, "dynamic_img_size", False):
            raise ValueError("fixed sin-cos embeddings here assume a fixed grid; build the ViT with "
                             "dynamic_img_size=False")
        owner, key = model, "pos_embed"
        prefix = 0 if model.no_embed_class else model.num_prefix_tokens
        grid, dim = tuple(model.patch_embed.grid_size), model.embed_dim
    elif isinstance(getattr(getattr(model, "encoder", None), "pos_embedding", None), torch.Tensor):
        # torchvision.models.VisionTransformer: Encoder.forward adds encoder.pos_embedding (1, 1 + H*W, d)
        owner, key, prefix = model.encoder, "pos_embedding", 1
        side = model.image_size // model.patch_size
        grid, dim = (side, side), model.hidden_dim
    else:
        raise ValueError(f"{type(model).__name__} is neither a timm nor a torchvision VisionTransformer")
    table = sincos_2d_table(grid, dim, prefix)
    old = getattr(owner, key)
    if tuple(old.shape) != tuple(table.shape):
        raise ValueError(f"{key} shape {tuple(old.shape)} != sin-cos table {tuple(table.shape)}")
    delattr(owner, key)
    owner.register_buffer(key, table.to(device=old.device, dtype=old.dtype), persistent=True)

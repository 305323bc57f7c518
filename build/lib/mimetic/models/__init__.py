"""Model builders (over timm) and the pieces the paper's setup needs."""

from mimetic.models.pos_embed import sincos_2d_table, use_fixed_sincos_pos_embed_
from mimetic.models.vit import build_vit

__all__ = ["build_vit", "sincos_2d_table", "use_fixed_sincos_pos_embed_"]

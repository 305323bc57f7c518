"""Model builders (over timm), registered by name, and the pieces the paper's setup needs.

Importing this package registers every model with the project's registry (``MODELS``)
and with timm (``timm.create_model("mimetic_vit_tiny_patch2_32", num_classes=10)``).
"""

from mimetic.models import convmixer, convnext, gpt, timm_any, vit, vit_variants  # noqa: F401  (registers the models)
from mimetic.models.base import MODELS, DataSpec, ModelOption
from mimetic.models.freeze import freeze_
from mimetic.models.pos_embed import sincos_2d_table, use_fixed_sincos_pos_embed_
from mimetic.models.vit import ViTMicro, ViTTiny, build_vit


def build_model(options: ModelOption, spec: DataSpec):
    """The registered builder for ``options.name``."""
    return MODELS.get(options.name).fn(options, spec)


__all__ = [
    "MODELS",
    "DataSpec",
    "ModelOption",
    "ViTMicro",
    "ViTTiny",
    "build_model",
    "build_vit",
    "freeze_",
    "sincos_2d_table",
    "use_fixed_sincos_pos_embed_",
]

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer


def make_vit(dim: int = 192, heads: int = 3, depth: int = 2, patch: int = 4, img: int = 32, seed: int = 0,
             **kwargs) -> VisionTransformer:
    torch.manual_seed(seed)
    return VisionTransformer(img_size=img, patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads,
                             num_classes=10, **kwargs)


@pytest.fixture
def vit_factory():
    return make_vit


@pytest.fixture(autouse=True)
def _few_threads():
    # Tests are small; two threads keep a 2-core CI machine responsive.
    torch.set_num_threads(2)

import sys
from pathlib import Path

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/helpers.py, tests/fake_data.py


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


@pytest.fixture(scope="session")
def folder_root(tmp_path_factory):
    """A small ImageFolder tree (3 classes, learnable colours), shared by the whole session."""
    from fake_data import write_image_folder

    return write_image_folder(tmp_path_factory.mktemp("folder"), train_per_class=40, test_per_class=10)


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory):
    from fake_data import write_cifar10

    return write_cifar10(tmp_path_factory.mktemp("cifar"), per_batch=32, test=64)

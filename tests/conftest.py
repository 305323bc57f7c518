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


def _session_threads() -> int:
    """The trainer's own ``auto`` choice, made once: at most 2 (tests are small), fewer when cores are busy.

    Exported as OMP_NUM_THREADS, so the CLI runs the tests start (and every in-process run) use it too:
    on a shared machine the suite does not oversubscribe the cores another job is using."""
    import os

    from mimetic.runtime.threads import choose_threads

    threads = min(2, choose_threads("auto").threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads


SESSION_THREADS = _session_threads()


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(SESSION_THREADS)


@pytest.fixture(scope="session")
def folder_root(tmp_path_factory):
    """A small ImageFolder tree (3 classes, learnable colours), shared by the whole session."""
    from fake_data import write_image_folder

    return write_image_folder(tmp_path_factory.mktemp("folder"), train_per_class=40, test_per_class=10)


@pytest.fixture(scope="session")
def cifar_root(tmp_path_factory):
    from fake_data import write_cifar10

    return write_cifar10(tmp_path_factory.mktemp("cifar"), per_batch=32, test=64)

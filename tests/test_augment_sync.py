"""The accelerator path of the augmentation: same images as the grouped CPU path, and no host syncs.

A host sync cannot be observed on the CPU, so the check records every aten op the transform
dispatches and refuses those that would wait for an accelerator or copy host data to it
(:class:`mimetic.data.host_syncs.HostSyncRecorder`, which scripts/gpu_check.py uses too):
reading a value back (``.item()``, ``bool(t)``, ``mask.any()`` in an ``if``), data-dependent
shapes (``x[mask]``, ``nonzero``), and tensors built from Python data (``torch.tensor(list)``).
On a machine with CUDA the same transform also runs under ``torch.cuda.set_sync_debug_mode("error")``.
"""

import pytest
import torch

from mimetic.data.augment import AUGS, GEOMETRIC, TrainTransform, _apply_all, randaugment, randaugment_space
from mimetic.data.host_syncs import HostSyncRecorder as Recorder


def images(n=96, size=32, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def transform(name="randaug_cutout", sync_free=None):
    return TrainTransform(AUGS.default_options(name), torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.25, 0.3]),
                          sync_free=sync_free)


@pytest.mark.parametrize("magnitude", [0, 9, 30])
@pytest.mark.parametrize("size", [32, 24])
def test_sync_free_path_gives_the_grouped_paths_images(magnitude, size):
    x = images(size=size)
    a = randaugment(x, 2, magnitude, torch.Generator().manual_seed(1), sync_free=False)
    b = randaugment(x, 2, magnitude, torch.Generator().manual_seed(1), sync_free=True)
    assert torch.equal(a, b)


@pytest.mark.parametrize("magnitude", [1, 9, 30])
def test_every_op_of_the_sync_free_round_is_torchvisions_op(magnitude):
    x = images(16)
    space = randaugment_space(32)
    for index, (name, (magnitudes, signed, op)) in enumerate(space.items()):
        m = float(magnitudes[magnitude])
        for negated in ((False, True) if signed else (False,)):
            chosen = torch.full((16,), index)
            got = _apply_all(x, chosen, torch.full((16,), negated), magnitude)
            assert torch.equal(got, op(x, -m if negated else m)), (name, negated)
    assert set(GEOMETRIC) < set(space)


def test_transforms_agree_whole_pipeline():
    x = images()
    for name in ("randaug_cutout", "basic", "none"):
        a = transform(name, sync_free=False)(x, torch.Generator().manual_seed(3))
        b = transform(name, sync_free=True)(x, torch.Generator().manual_seed(3))
        assert torch.equal(a, b), name


def test_sync_free_transform_dispatches_no_syncing_op():
    x = images()
    t = transform(sync_free=True)
    t(x, torch.Generator().manual_seed(0))  # warm-up: index maps and statistics are cached on the device
    with Recorder() as rec:
        t(x, torch.Generator().manual_seed(1))
    assert rec.bad == []


def test_the_recorder_sees_the_grouped_paths_syncs():
    x = images()
    t = transform(sync_free=False)
    t(x, torch.Generator().manual_seed(0))
    with Recorder() as rec:
        t(x, torch.Generator().manual_seed(1))
    assert any(b.startswith("_local_scalar_dense") for b in rec.bad)  # mask.any() in an if
    assert any("boolean mask" in b for b in rec.bad)  # x[mask]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_transform_runs_under_sync_debug_mode_error():
    x = images().cuda()
    t = transform()
    g = torch.Generator(device="cuda").manual_seed(0)
    t(x, g)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = t(x, g)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    cpu = transform(sync_free=False)(x.cpu(), torch.Generator().manual_seed(0))
    assert out.shape == cpu.shape

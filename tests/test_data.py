"""Dataset readers (real formats written on the fly), splits and augmentation."""

import numpy as np
import pytest
import torch
from fake_data import class_images, write_cifar10, write_cifar100, write_image_folder, write_svhn

from mimetic.data.augment import ImageAug as AugConfig
from mimetic.data.augment import TrainTransform, cutout_, randaugment, randaugment_space, random_crop
from mimetic.data.sources import (
    load_cifar,
    load_digits,
    load_image_folder,
    load_svhn,
    resize_split,
    stratified_holdout,
)
from mimetic.errors import DatasetError


def test_cifar10_pickles_read_like_the_real_ones(tmp_path):
    write_cifar10(tmp_path, per_batch=8, test=10)
    raw = load_cifar("cifar10", tmp_path, download=False, verify_checksums=False)
    assert raw.train.images.shape == (40, 3, 32, 32) and raw.train.images.dtype == torch.uint8
    assert raw.test.images.shape == (10, 3, 32, 32)
    assert raw.classes[3] == "cat" and len(raw.classes) == 10
    # Pixel layout: channel-major rows of 1024, as in the real files.
    images, labels = class_images(8, 10, seed=1)
    assert torch.equal(raw.train.images[0], torch.from_numpy(images[0]).permute(2, 0, 1))
    assert raw.train.labels[:8].tolist() == labels.tolist()


def test_cifar_checksums_are_checked_by_default(tmp_path):
    write_cifar10(tmp_path, per_batch=4, test=4)
    with pytest.raises(DatasetError, match="md5"):
        load_cifar("cifar10", tmp_path, download=False, verify_checksums=True)


def test_cifar100_fine_labels(tmp_path):
    write_cifar100(tmp_path, train=50, test=20)
    raw = load_cifar("cifar100", tmp_path, download=False, verify_checksums=False)
    assert len(raw.classes) == 100 and len(raw.train) == 50 and raw.train.labels.max() < 100


def test_missing_cifar_names_files_and_download_command(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_cifar("cifar10", tmp_path / "empty", download=False, verify_checksums=True)
    text = str(err.value)
    assert "cifar-10-batches-py/data_batch_1" in text and "test_batch" in text
    assert "python scripts/prepare_data.py cifar10" in text and "dataset.download=true" in text


def test_svhn_mat_files(tmp_path):
    write_svhn(tmp_path, train=30, test=10)
    raw = load_svhn(tmp_path, download=False, verify_checksums=False)
    assert raw.train.images.shape == (30, 3, 32, 32)
    _, labels = class_images(30, 10, seed=5)
    assert raw.train.labels.tolist() == labels.tolist()  # label 10 read back as digit 0
    with pytest.raises(DatasetError, match="train_32x32.mat"):
        load_svhn(tmp_path / "none", download=False, verify_checksums=False)


def test_image_folder_any_size_is_resized(tmp_path):
    write_image_folder(tmp_path, size=(40, 30))
    raw = load_image_folder(tmp_path, image_size=32)
    assert raw.classes == ["cat", "dog", "ship"]
    assert raw.train.images.shape == (36, 3, 32, 32) and raw.test.images.shape == (12, 3, 32, 32)
    assert sorted(raw.train.labels.unique().tolist()) == [0, 1, 2]


def test_image_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match="train/<class>/<image>"):
        load_image_folder(tmp_path / "nothing", image_size=32)
    write_image_folder(tmp_path / "a", classes=("cat", "dog"))
    (tmp_path / "a" / "test" / "dog").rename(tmp_path / "a" / "test" / "cow")
    with pytest.raises(DatasetError, match="different class folders"):
        load_image_folder(tmp_path / "a", image_size=32)
    write_image_folder(tmp_path / "b", classes=("cat", "dog"))
    (tmp_path / "b" / "train" / "cat" / "0000.png").write_bytes(b"broken")
    with pytest.raises(DatasetError, match="cannot read image"):
        load_image_folder(tmp_path / "b", image_size=32)


def test_digits_fixed_stratified_split():
    a, b = load_digits(), load_digits()
    assert len(a.train) == 1437 and len(a.test) == 360
    assert torch.equal(a.test.images, b.test.images)
    counts = torch.bincount(a.test.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    assert a.train.images.shape[1:] == (3, 8, 8) and a.train.images.max() == 255
    assert resize_split(a.test, 32).images.shape == (360, 3, 32, 32)


def test_stratified_holdout_is_fixed_and_stratified():
    labels = torch.arange(100) % 4
    keep, hold = stratified_holdout(labels, 0.2)
    keep2, hold2 = stratified_holdout(labels, 0.2)
    assert torch.equal(hold, hold2) and torch.equal(keep, keep2)
    assert len(hold) == 20 and torch.bincount(labels[hold]).tolist() == [5, 5, 5, 5]
    assert set(keep.tolist()).isdisjoint(hold.tolist())


def batch(n=16, seed=0):
    return torch.from_numpy(class_images(n, 4, seed=seed)[0]).permute(0, 3, 1, 2).contiguous()


def test_augmentation_is_a_function_of_the_generator():
    x = batch()
    t = TrainTransform(AugConfig(), torch.full((3,), 0.5), torch.full((3,), 0.25))
    a = t(x, torch.Generator().manual_seed(1))
    b = t(x, torch.Generator().manual_seed(1))
    c = t(x, torch.Generator().manual_seed(2))
    assert a.dtype == torch.float32 and a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_crop_shifts_each_sample_within_the_padding():
    x = batch(8)
    out = random_crop(x, 4, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(8):  # every output is some shifted window of the zero-padded input
        padded = torch.nn.functional.pad(x[i], (4, 4, 4, 4))
        assert any(torch.equal(out[i], padded[:, dy:dy + 32, dx:dx + 32]) for dy in range(9) for dx in range(9))


def test_cutout_zeroes_one_square_per_sample():
    x = torch.ones(32, 3, 32, 32)
    cutout_(x, 8, torch.Generator().manual_seed(0))
    zeros = (x[:, 0] == 0).sum(dim=(1, 2))
    assert (zeros > 0).all() and (zeros <= 64).all()
    assert torch.equal(x[:, 0] == 0, x[:, 2] == 0)  # all channels


def test_randaugment_covers_every_op_and_keeps_uint8():
    x = batch(64)
    out = randaugment(x, 2, 9, torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    changed = (out != x).flatten(1).any(1)
    assert changed.float().mean() > 0.8  # only (Identity, Identity)-like draws leave a sample as it was
    assert torch.equal(randaugment(x, 0, 9, torch.Generator()), x)
    for name, (magnitudes, _, op) in randaugment_space(32).items():
        if name != "Identity":
            assert not torch.equal(op(x[:4], float(magnitudes[9])), x[:4]), name


def test_transform_normalises_with_given_stats():
    x = torch.full((2, 3, 8, 8), 128, dtype=torch.uint8)
    cfg = AugConfig(name="none", crop_padding=0, flip=False, randaug_ops=0, cutout=0)
    out = TrainTransform(cfg, torch.full((3,), 128 / 255), torch.ones(3))(x, torch.Generator())
    assert torch.allclose(out, torch.zeros_like(out), atol=1e-6)
    assert np.isclose(float(out.std()), 0.0)


def test_chunked_channel_statistics_match_the_exact_pass(monkeypatch):
    import mimetic.data.images as data

    images = torch.randint(0, 256, (300, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    exact = data.channel_statistics(images)
    monkeypatch.setattr(data, "EXACT_STATISTICS_MAX", 10)
    chunked = data.channel_statistics(images)
    for a, b in zip(exact, chunked):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)

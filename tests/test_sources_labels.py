"""CIFAR/SVHN readers check labels and array shapes at load time, not mid-epoch."""

import pickle

import numpy as np
import pytest
from fake_data import write_cifar10, write_cifar100, write_svhn

from mimetic.data.sources import load_cifar, load_svhn
from mimetic.errors import DatasetError


def edit_pickle(path, **changes):
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    entry.update(changes)
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


def load10(root):
    return load_cifar("cifar10", root, download=False, verify_checksums=False)


def test_cifar_label_beyond_the_class_list_names_file_and_fix(tmp_path):
    write_cifar10(tmp_path, per_batch=10, test=10)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    edit_pickle(batch, labels=[0, 1, 2, 3, 4, 5, 6, 7, 8, 10])  # 10 is not one of CIFAR-10's classes
    with pytest.raises(DatasetError) as err:
        load10(tmp_path)
    text = str(err.value)
    assert "data_batch_3" in text and "0..9" in text and "[10]" in text
    assert "python scripts/prepare_data.py cifar10" in text


def test_cifar_negative_label_and_label_count(tmp_path):
    write_cifar10(tmp_path, per_batch=10, test=10)
    folder = tmp_path / "cifar-10-batches-py"
    edit_pickle(folder / "test_batch", labels=[-1] + [0] * 9)
    with pytest.raises(DatasetError, match="test_batch.*outside 0..9"):
        load10(tmp_path)
    edit_pickle(folder / "test_batch", labels=[0] * 9)
    with pytest.raises(DatasetError, match="test_batch: 9 labels for 10 images"):
        load10(tmp_path)


def test_cifar100_fine_label_100_is_refused(tmp_path):
    write_cifar100(tmp_path, train=20, test=10)
    edit_pickle(tmp_path / "cifar-100-python" / "train", fine_labels=[100] + list(range(19)))
    with pytest.raises(DatasetError, match="train: 1 labels lie outside 0..99"):
        load_cifar("cifar100", tmp_path, download=False, verify_checksums=False)


def test_cifar_array_shape_dtype_and_meta(tmp_path):
    write_cifar10(tmp_path, per_batch=10, test=10)
    folder = tmp_path / "cifar-10-batches-py"
    edit_pickle(folder / "data_batch_1", data=np.zeros((10, 3000), dtype=np.uint8))
    with pytest.raises(DatasetError, match=r"data_batch_1: data has shape \(10, 3000\), expected \(N, 3072\)"):
        load10(tmp_path)
    edit_pickle(folder / "data_batch_1", data=np.full((10, 3072), 300, dtype=np.int64))  # would wrap as uint8
    with pytest.raises(DatasetError, match="data_batch_1.*int64.*300"):
        load10(tmp_path)
    write_cifar10(tmp_path, per_batch=10, test=10)
    edit_pickle(folder / "batches.meta", label_names=["a", "b"])
    with pytest.raises(DatasetError, match="batches.meta lists 2 classes, CIFAR-10 has 10"):
        load10(tmp_path)


def test_svhn_labels_and_shapes(tmp_path):
    from scipy.io import loadmat, savemat

    write_svhn(tmp_path, train=20, test=10)
    path = tmp_path / "train_32x32.mat"
    mat = loadmat(str(path))
    bad = mat["y"].copy()
    bad[3] = 11
    savemat(str(path), {"X": mat["X"], "y": bad})
    with pytest.raises(DatasetError, match="train_32x32.mat.*outside SVHN's labels 1..10"):
        load_svhn(tmp_path, download=False, verify_checksums=False)
    savemat(str(path), {"X": mat["X"], "y": mat["y"][:-1]})
    with pytest.raises(DatasetError, match=r"train_32x32.mat: 'y' has shape \(19, 1\) for 20 images"):
        load_svhn(tmp_path, download=False, verify_checksums=False)
    savemat(str(path), {"X": mat["X"][:28, :28], "y": mat["y"]})
    with pytest.raises(DatasetError, match=r"'X' has shape \(28, 28, 3, 20\), expected \(32, 32, 3, N\)"):
        load_svhn(tmp_path, download=False, verify_checksums=False)


def test_valid_files_still_read(tmp_path):
    write_cifar10(tmp_path, per_batch=10, test=10)
    raw = load10(tmp_path)
    assert raw.train.labels.dtype == raw.test.labels.dtype and raw.train.labels.max() < 10
    write_svhn(tmp_path / "svhn", train=20, test=10)
    assert set(load_svhn(tmp_path / "svhn", download=False, verify_checksums=False).train.labels.tolist()) <= set(
        range(10))

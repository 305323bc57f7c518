"""data_files lists what each reader reads; fingerprint_files identifies it from names and sizes."""

import builtins
import random
import shutil
from pathlib import Path

import pytest
from fake_data import write_cifar10, write_cifar100, write_image_folder, write_svhn

from mimetic.data.sources import data_files, fingerprint_files, load_cifar, load_image_folder, load_svhn
from mimetic.errors import DatasetError


def first(folder: Path) -> Path:
    return sorted(folder.glob("*.png"))[0]


def names(root: Path, files: list[Path]) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in files)


def test_fixed_files_of_the_packaged_datasets(tmp_path):
    write_cifar10(tmp_path / "c10", per_batch=4, test=4)
    assert names(tmp_path / "c10", data_files("cifar10", tmp_path / "c10")) == sorted(
        [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
        + ["cifar-10-batches-py/test_batch", "cifar-10-batches-py/batches.meta"])
    write_cifar100(tmp_path / "c100", train=10, test=10)
    assert names(tmp_path / "c100", data_files("cifar100", tmp_path / "c100")) == [
        "cifar-100-python/meta", "cifar-100-python/test", "cifar-100-python/train"]
    write_svhn(tmp_path / "svhn", train=10, test=10)
    assert names(tmp_path / "svhn", data_files("svhn", tmp_path / "svhn")) == ["test_32x32.mat", "train_32x32.mat"]
    assert data_files("digits", tmp_path / "nowhere") == []


def test_image_folder_files_are_what_imagefolder_loads(tmp_path):
    from torchvision.datasets import ImageFolder

    root = write_image_folder(tmp_path / "imgs", train_per_class=4, test_per_class=2)
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / "README.md").write_text("outside any class folder")
    (root / "train" / "dog" / "nested").mkdir()
    shutil.copy(first(root / "train" / "dog"), root / "train" / "dog" / "nested" / "extra.PNG")
    files = data_files("image_folder", root)
    want = [Path(p) for split in ("train", "test") for p, _ in ImageFolder(str(root / split)).samples]
    assert files == want
    assert "train/dog/nested/extra.PNG" in names(root, files) and "train/cat/notes.txt" not in names(root, files)


def test_missing_data_raises_the_readers_error(tmp_path):
    cases = [
        ("cifar10", lambda root: load_cifar("cifar10", root, download=False, verify_checksums=False)),
        ("cifar100", lambda root: load_cifar("cifar100", root, download=False, verify_checksums=False)),
        ("svhn", lambda root: load_svhn(root, download=False, verify_checksums=False)),
        ("image_folder", lambda root: load_image_folder(root, image_size=32)),
    ]
    for name, read in cases:
        with pytest.raises(DatasetError) as from_reader:
            read(tmp_path / "missing")
        with pytest.raises(DatasetError) as from_listing:
            data_files(name, tmp_path / "missing")
        assert str(from_listing.value) == str(from_reader.value), name
    root = write_image_folder(tmp_path / "a", classes=("cat", "dog"))
    (root / "test" / "dog").rename(root / "test" / "cow")
    with pytest.raises(DatasetError, match="different class folders"):
        data_files("image_folder", root)


def fingerprint(root: Path) -> str:
    return fingerprint_files(root, data_files("image_folder", root))


def test_fingerprint_follows_content_not_location(tmp_path):
    a = write_image_folder(tmp_path / "a", seed=0)
    b = write_image_folder(tmp_path / "b", seed=1)  # same names, other images
    assert fingerprint(a) != fingerprint(b)
    moved = Path(shutil.copytree(a, tmp_path / "elsewhere" / "deeper" / "a"))
    assert fingerprint(moved) == fingerprint(a)
    files = data_files("image_folder", a)
    assert fingerprint_files(a, random.Random(0).sample(files, len(files))) == fingerprint(a)  # order-free
    assert len(fingerprint(a)) == 12 and int(fingerprint(a), 16) >= 0

    before = fingerprint(moved)
    first(moved / "train" / "cat").rename(moved / "train" / "dog" / "relabelled.png")
    assert fingerprint(moved) != before
    before = fingerprint(moved)
    first(moved / "test" / "cat").unlink()
    assert fingerprint(moved) != before
    before = fingerprint(moved)
    with open(first(moved / "test" / "dog"), "ab") as f:
        f.write(b"\0")  # changed size
    assert fingerprint(moved) != before
    with pytest.raises(ValueError, match="not under"):
        fingerprint_files(b, files)


def test_listing_and_fingerprint_open_no_file(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "imgs")
    expected = fingerprint(root)
    real_open = builtins.open

    def no_reads(file, *args, **kwargs):
        if str(file).startswith(str(root)):
            raise AssertionError(f"opened {file}")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_reads)
    monkeypatch.setattr("PIL.Image.open", lambda *a, **k: (_ for _ in ()).throw(AssertionError("PIL.Image.open")))
    assert fingerprint(root) == expected

"""scripts/prepare_data.py cifar-slice on fake official CIFAR-10 pickles (the real format, made on the fly)."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from fake_data import class_images, write_cifar10
from helpers import load_script
from PIL import Image

from mimetic.data.sources import load_image_folder


@pytest.fixture(scope="module")
def slicer():
    return load_script("scripts/prepare_data.py")


@pytest.fixture(scope="module")
def built(tmp_path_factory, slicer):
    """A full-size slice (500 / 100 per class) from 5 x 1,000 training + 1,000 test fake images."""
    source = write_cifar10(tmp_path_factory.mktemp("cifar"), per_batch=1000, test=1000)
    out = tmp_path_factory.mktemp("slices") / "cifar10-jpeg-6k"
    assert slicer.main(["cifar-slice", "--source", str(source), "--out", str(out), "--no-verify"]) == 0
    return source, out


def decoded(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"), dtype=np.int16)


def test_file_list_and_counts(built, slicer):
    _, out = built
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == slicer.expected_files() and len(files) == 6000
    for split, per_class in (("train", 500), ("test", 100)):
        for cls in slicer.CLASSES:
            names = sorted(p.name for p in (out / split / cls).iterdir())
            assert names == [f"{i:04d}.jpg" for i in range(per_class)]
    raw = load_image_folder(out, image_size=32)  # the layout the image_folder reader expects
    assert raw.classes == list(slicer.CLASSES) and len(raw.train) == 5000 and len(raw.test) == 1000


def test_numbering_follows_the_official_file_order(built, slicer):
    # The fake batches hold 100 images per class each, so the per-class counter runs across
    # batches: file 0100 of a class is that class's first image in data_batch_2.
    _, out = built
    for batch, split, number in ((1, "train", 0), (2, "train", 100), (5, "train", 499), (100, "test", 99)):
        images, labels = class_images(1000, 10, seed=batch)
        for c, cls in enumerate(slicer.CLASSES[:3]):
            index = np.flatnonzero(labels == c)[number % 100]
            jpeg = decoded(out / split / cls / f"{number:04d}.jpg")
            errors = sorted(np.abs(jpeg - images[i]).mean() for i in np.flatnonzero(labels == c))
            right = np.abs(jpeg - images[index]).mean()  # JPEG of noise: ~20 levels off, any other image ~28
            assert right == errors[0] and right < errors[1] - 4, (batch, cls, number)


def test_check_compares_names_and_pixels(built, slicer, tmp_path, capsys):
    _, out = built
    copy = Path(shutil.copytree(out, tmp_path / "copy"))
    assert slicer.main(["cifar-slice", "--out", str(out), "--check", str(copy)]) == 0
    report = capsys.readouterr().out
    assert "6000 files in both: 6000 byte-identical" in report and "mean |pixel difference| 0.000" in report

    shutil.copy(out / "train" / "cat" / "0001.jpg", copy / "train" / "cat" / "0000.jpg")  # another image
    Image.open(out / "test" / "dog" / "0005.jpg").save(copy / "test" / "dog" / "0005.jpg", quality=95)  # re-encoded
    (copy / "test" / "ship" / "0099.jpg").unlink()
    assert slicer.main(["cifar-slice", "--out", str(out), "--check", str(copy)]) == 1
    report = capsys.readouterr().out
    assert "1 files only in" in report and "test/ship/0099.jpg" in report
    assert "differ by more than" in report and "train/cat/0000.jpg" in report
    assert "test/dog/0005.jpg" not in report.split("differ by more than")[1]  # a re-encoding is not a new image
    assert "slices DIFFER" in report


def test_refuses_to_overwrite_and_checks_md5_by_default(built, slicer, capsys):
    source, out = built
    assert slicer.main(["cifar-slice", "--source", str(source), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
    assert slicer.main(["cifar-slice", "--source", str(source), "--out", str(out.parent / "other")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "md5" in err and not (out.parent / "other").exists()

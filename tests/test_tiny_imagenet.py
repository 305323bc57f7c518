"""Tiny ImageNet from generated trees in the official layout: odd names, greyscale/CMYK JPEGs, annotations, cache."""

from pathlib import Path

import numpy as np
import pytest
import torch
from fake_imagenet import WNIDS, write_tiny_imagenet

from mimetic.data import DATASETS, DataRequest
from mimetic.data import tiny_imagenet as tiny
from mimetic.errors import DatasetError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIMETIC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_official_layout_reads_every_image_with_its_label(tmp_path, cache):
    root = write_tiny_imagenet(tmp_path / "data")
    raw = tiny.load_tiny_imagenet(root)
    assert raw.classes == sorted(WNIDS)  # wnids.txt is not sorted: labels follow the sorted wnids
    assert raw.train.images.shape == (24, 3, 64, 64) and raw.train.images.dtype == torch.uint8
    assert raw.test.images.shape == (9, 3, 64, 64)
    layout = tiny.find_layout(root)
    names = {p.name for p, _ in layout.train}
    assert "n01443537 1 (copy).jpeg" in names and "n01443537_é2.JPG" in names  # odd names, odd suffixes
    # Every image carries its class tint in channel (wnid's position in WNIDS) % 3: labels match files.
    for images, labels, items in ((raw.train.images, raw.train.labels, layout.train),
                                  (raw.test.images, raw.test.labels, layout.val)):
        for img, label, (path, item_label) in zip(images, labels, items):
            assert int(label) == item_label
            channel = WNIDS.index(raw.classes[label]) % 3
            means = img.float().mean(dim=(1, 2))
            if path.name in ("val_4.JPEG", "n01443537 1 (copy).jpeg"):  # the greyscale JPEGs: equal channels
                assert means.max() - means.min() < 3
            else:  # RGB and CMYK ("n01629819_é2.JPG") alike
                assert means.argmax() == channel, path


def test_the_decode_cache_is_used_and_keyed_by_the_files(tmp_path, cache, monkeypatch):
    root = write_tiny_imagenet(tmp_path / "data")
    first = tiny.load_tiny_imagenet(root)
    assert len(list(cache.iterdir())) == 1
    monkeypatch.setattr(tiny, "_decode", lambda item: pytest.fail("decoded again despite the cache"))
    again = tiny.load_tiny_imagenet(root)
    assert torch.equal(first.train.images, again.train.images) and torch.equal(first.test.labels, again.test.labels)
    # Another file: another fingerprint, another cache entry (decoded, so _decode is needed again).
    monkeypatch.undo()
    monkeypatch.setenv("MIMETIC_CACHE_DIR", str(cache))
    extra = root / "tiny-imagenet-200" / "train" / WNIDS[0] / "images" / "extra.JPEG"
    extra.write_bytes((root / "tiny-imagenet-200" / "val" / "images" / "val_0.JPEG").read_bytes())
    assert tiny.load_tiny_imagenet(root).train.images.shape[0] == 25
    assert len(list(cache.iterdir())) == 2


def test_a_cache_beside_the_data_when_no_cache_dir_is_set(tmp_path, monkeypatch):
    monkeypatch.delenv("MIMETIC_CACHE_DIR", raising=False)
    root = write_tiny_imagenet(tmp_path / "data", nested=False)
    tiny.load_tiny_imagenet(root)
    assert any((root / ".mimetic-cache").iterdir())
    assert tiny.TinyImageNet(name="tiny_imagenet", root=str(root)).fingerprint()  # cache files are not data


def test_a_missing_annotation_line_is_refused_or_skipped_on_request(tmp_path, cache):
    root = write_tiny_imagenet(tmp_path / "data", missing_annotation=True)
    with pytest.raises(DatasetError, match=r"1 image\(s\).*no line in .*val_annotations.txt.*val_1.JPEG.*"
                                           r"skip_unannotated_val=true"):
        tiny.load_tiny_imagenet(root)
    raw = tiny.load_tiny_imagenet(root, skip_unannotated=True)
    assert raw.test.images.shape[0] == 8


def test_annotations_that_cannot_be_right_are_refused(tmp_path, cache):
    root = write_tiny_imagenet(tmp_path / "data") / "tiny-imagenet-200"
    notes = root / "val" / "val_annotations.txt"
    good = notes.read_text()
    notes.write_text(good + "ghost.JPEG\tn01443537\t0\t0\t1\t1\n")
    with pytest.raises(DatasetError, match="ghost.JPEG"):
        tiny.load_tiny_imagenet(root)
    notes.write_text(good.replace("n01629819", "n99999999", 1))
    with pytest.raises(DatasetError, match="n99999999.*not in .*wnids.txt"):
        tiny.load_tiny_imagenet(root)
    notes.write_text(good)
    (root / "train" / "n00000001" / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"n00000001.*not in"):
        tiny.load_tiny_imagenet(root)


def test_no_data_is_one_clear_message(tmp_path):
    with pytest.raises(DatasetError, match="wnids.txt does not exist.*tiny-imagenet-200"):
        tiny.load_tiny_imagenet(tmp_path)


def test_the_registered_dataset_gives_loaders_at_the_model_size(tmp_path, cache):
    root = write_tiny_imagenet(tmp_path / "data")
    option = DATASETS.default_options("tiny_imagenet")
    option.root = str(root)
    data = DATASETS.get("tiny_imagenet").fn(option, DataRequest(image_size=32, batch_size=8, eval_batch_size=4,
                                                                device=torch.device("cpu")))
    assert data.spec.num_classes == 3 and data.spec.image_size == 32 and data.classes == sorted(WNIDS)
    assert data.train.num_samples == 24 and data.test.num_samples == 9 and len(data.train) == 3
    x, y = next(iter(data.test.epoch()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and np.isfinite(x.numpy()).all()


def test_the_fingerprint_follows_the_files_not_their_place(tmp_path):
    a = write_tiny_imagenet(tmp_path / "a")
    b = write_tiny_imagenet(tmp_path / "b")
    fp = lambda root: tiny.TinyImageNet(name="tiny_imagenet", root=str(root)).fingerprint()  # noqa: E731
    assert fp(a) == fp(b)
    Path(b / "tiny-imagenet-200" / "val" / "images" / "val_0.JPEG").rename(
        b / "tiny-imagenet-200" / "val" / "images" / "val_00.JPEG")
    with pytest.raises(DatasetError):  # the annotation now names a missing file
        fp(b)

"""The streaming ImageNet loader on generated class-folder trees of real JPEGs (odd names, greyscale, CMYK)."""

import os
import socket
import subprocess
import sys

import pytest
import torch
from fake_imagenet import WNIDS, write_imagenet
from helpers import REPO, TINY, read_metrics

from mimetic.data import DATASETS, DataRequest
from mimetic.errors import ConfigError, DatasetError


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_imagenet(tmp_path_factory.mktemp("imagenet"), train_per_class=9, val_per_class=3)


def build(root, workers: int, monkeypatch, *, rank=0, world=1, batch=6, aug=None, size=32):
    monkeypatch.setenv("MIMETIC_DATA_WORKERS", str(workers))
    option = DATASETS.default_options("imagenet")
    option.root = str(root)
    return DATASETS.get("imagenet").fn(option, DataRequest(image_size=size, batch_size=batch, eval_batch_size=4,
                                                           device=torch.device("cpu"), aug=aug, rank=rank,
                                                           world_size=world))


def batches(loader, seed=0, start_step=0):
    generator = torch.Generator().manual_seed(seed)
    return list(loader.epoch(generator, start_step=start_step))


def same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) and torch.equal(u, v) for (x, u), (y, v) in zip(a, b))


def test_two_workers_give_the_batches_of_none_and_resume_mid_epoch(tree, monkeypatch):
    data = build(tree, 2, monkeypatch)
    assert data.classes == sorted(WNIDS) and data.spec.num_classes == 3 and data.spec.image_size == 32
    assert len(data.train) == 5 and data.train.num_samples == 27 and data.test.num_samples == 9
    two = batches(data.train)
    assert [x.shape[0] for x, _ in two] == [6, 6, 6, 6, 3]
    x, y = two[0]
    assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) and y.dtype == torch.int64
    assert -3 < x.mean() < 3 and x.std() > 0.1  # normalised on the device
    assert same(two, batches(build(tree, 0, monkeypatch).train))  # no dependence on the worker count
    assert same(two[2:], batches(data.train, start_step=2))  # exact mid-epoch resume, nothing re-read
    assert not same(two, batches(data.train, seed=1))  # another epoch: another order and other crops
    assert sorted(torch.cat([y for _, y in two]).tolist()) == sorted([i % 3 for i in range(27)])
    evaluation = list(data.test.epoch())
    assert [x.shape[0] for x, _ in evaluation] == [4, 4, 1] and same(evaluation, list(data.test.epoch()))


def test_each_rank_takes_its_slice_of_every_global_batch(tree, monkeypatch):
    whole = batches(build(tree, 0, monkeypatch).train)
    parts = [batches(build(tree, 1, monkeypatch, rank=r, world=2).train) for r in (0, 1)]
    for step, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][step][0], parts[1][step][0]]), x)
        assert torch.equal(torch.cat([parts[0][step][1], parts[1][step][1]]), y)


def test_labels_follow_the_class_folders(tree, monkeypatch):
    # Each class's images are tinted in channel (class index) % 3, greyscale and CMYK files included.
    data = build(tree, 0, monkeypatch, size=48)
    for x, y in data.test.epoch():
        for image, label in zip(x, y):
            assert image.mean(dim=(1, 2)).argmax() == label % 3


def test_on_device_augmentation_is_refused(tree, monkeypatch):
    from mimetic.data.augment import AUGS

    with pytest.raises(ConfigError, match="aug=none"):
        build(tree, 0, monkeypatch, aug=AUGS.default_options("randaug_cutout"))
    build(tree, 0, monkeypatch, aug=AUGS.default_options("none"))


def test_a_broken_jpeg_is_one_message_naming_the_file(tmp_path, monkeypatch):
    root = write_imagenet(tmp_path / "inet", train_per_class=2, val_per_class=1)
    bad = root / "train" / WNIDS[1] / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    data = build(root, 2, monkeypatch, batch=7)
    with pytest.raises(DatasetError, match=r"cannot read image .*broken.JPEG") as err:
        batches(data.train)
    assert "Traceback" not in str(err.value)


def test_a_missing_split_is_one_message(tmp_path, monkeypatch):
    root = write_imagenet(tmp_path / "inet", train_per_class=1, val_per_class=1)
    os.rename(root / "val", root / "validation")
    with pytest.raises(DatasetError, match=r"val does not exist.*prepare_data.py imagenet-val"):
        build(root, 0, monkeypatch)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_stream_what_one_process_streams(tmp_path, tree):
    # 27 images, global batch 6: the last batch (3) splits 2/1 over the ranks.
    args = [*TINY, "dataset=imagenet", f"dataset.root={tree}", "aug=none", "trainer.epochs=2",
            "trainer.batch_size=6", "trainer.eval_batch_size=4", "init=mimetic"]
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "MIMETIC_DATA_WORKERS": "1"}
    one = subprocess.run([sys.executable, "train.py", *args, f"hydra.run.dir={tmp_path / 'one'}"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          f"--master_port={_free_port()}", "train.py", *args, f"hydra.run.dir={tmp_path / 'two'}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [5, 10]
    for ra, rb in zip(a, b):
        for key in ("train_loss", "test_loss", "lr"):
            assert rb[key] == pytest.approx(ra[key], rel=1e-4), key
        for key in ("train_acc", "test_acc"):
            assert rb[key] == pytest.approx(ra[key], abs=0.05), key
    assert "x 2 processes" in (tmp_path / "two" / "train.log").read_text()

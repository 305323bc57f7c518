"""scripts/prepare_data.py imagenet-val sorts a flat official-style validation folder into class folders."""

import torch
from fake_imagenet import WNIDS, write_imagenet
from helpers import load_script

from mimetic.data import DATASETS, DataRequest

prepare = load_script("scripts/prepare_data.py")


def flatten(root):
    """The official layout: every val image directly in val/, labels in Kaggle's csv."""
    rows, number = ["ImageId,PredictionString"], 0
    for folder in sorted((root / "val").iterdir()):
        for image in sorted(folder.iterdir()):
            number += 1
            name = f"ILSVRC2012_val_{number:08d}"
            image.rename(root / "val" / f"{name}.JPEG")
            rows.append(f"{name},{folder.name} 1 2 30 40 {folder.name} 5 6 7 8")
        folder.rmdir()
    return "\n".join(rows) + "\n"


def test_the_flat_folder_is_sorted_and_then_loads(tmp_path, monkeypatch):
    root = write_imagenet(tmp_path / "inet", train_per_class=2, val_per_class=2)
    csv = tmp_path / "LOC_val_solution.csv"
    csv.write_text(flatten(root))
    assert prepare.main(["imagenet-val", str(root / "val"), str(csv), "--dry-run"]) == 0
    assert len(list((root / "val").glob("*.JPEG"))) == 6
    assert prepare.main(["imagenet-val", str(root / "val"), str(csv), "--train", str(root / "train")]) == 0
    assert sorted(p.name for p in (root / "val").iterdir()) == sorted(WNIDS)
    assert prepare.main(["imagenet-val", str(root / "val"), str(csv)]) == 0  # again: nothing to do
    monkeypatch.setenv("MIMETIC_DATA_WORKERS", "0")
    option = DATASETS.default_options("imagenet")
    option.root = str(root)
    data = DATASETS.get("imagenet").fn(option, DataRequest(32, 4, 6, torch.device("cpu"), aug=None))
    x, y = next(iter(data.test.epoch()))
    assert sorted(y.tolist()) == [0, 0, 1, 1, 2, 2]


def test_plain_labels_and_a_missing_label(tmp_path, capsys):
    val = tmp_path / "val"
    val.mkdir()
    for i in range(3):
        (val / f"img {i}.JPEG").write_bytes(b"x")  # odd names: spaces
    labels = tmp_path / "labels.txt"
    labels.write_text(f"img 0.JPEG {WNIDS[0]}\nimg 1.JPEG {WNIDS[1]}\n")
    assert prepare.main(["imagenet-val", str(val), str(labels)]) == 2
    assert "error: 1 image(s) have no label" in capsys.readouterr().err and len(list(val.iterdir())) == 3
    assert prepare.main(["imagenet-val", str(val), str(labels), "--allow-missing"]) == 0
    assert (val / WNIDS[0] / "img 0.JPEG").exists() and (val / "img 2.JPEG").exists()

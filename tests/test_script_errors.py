"""Bad or missing arguments to the scripts are one message (exit 2), never a traceback:
benchmark.py's stream and models parts, prepare_data.py's subcommands; the tree `benchmark.py --parts stream
--stream-make` writes is one its own loader reads, and split-classes splits a tree by class."""


import pytest
import torch
from helpers import load_script


@pytest.fixture(scope="module")
def benchmark():
    return load_script("scripts/benchmark.py", "benchmark_script")


@pytest.fixture(scope="module")
def prepare():
    return load_script("scripts/prepare_data.py")


@pytest.fixture
def quiet_threads(monkeypatch):
    """benchmark.main sets torch's and BLAS's thread counts for the process: not this test process's."""
    import threadpoolctl

    monkeypatch.setenv("MIMETIC_DATA_WORKERS", "0")
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(threadpoolctl, "threadpool_limits", lambda *args, **kwargs: None)


def test_the_stream_part_without_a_tree_is_one_message(benchmark, tmp_path, capsys, quiet_threads):
    with pytest.raises(SystemExit) as stop:
        benchmark.main(["--parts", "stream"])
    assert stop.value.code == 2 and "give the tree to read (--stream-root ROOT), or --stream-make DIR" in \
        capsys.readouterr().err
    assert benchmark.main(["--parts", "stream", "--stream-root", str(tmp_path / "missing"), "--stream-seconds",
                           "0.1", "--threads", "1"]) == 2
    err = capsys.readouterr().err
    assert "error: ImageNet split not found" in err and "Traceback" not in err
    for bad in (["--parts", "stream", "--stream-make", str(tmp_path / "t"), "--stream-images", "0"],
                ["--stream-root", str(tmp_path)]):  # a stream option without the stream part
        with pytest.raises(SystemExit):
            benchmark.main(bad)
    (tmp_path / "file").write_text("")
    assert benchmark.main(["--parts", "stream", "--stream-make", str(tmp_path / "file" / "t"), "--stream-images",
                           "1", "--threads", "1"]) == 2
    assert "give --stream-make a writable folder" in capsys.readouterr().err


def test_the_stream_part_reads_the_tree_it_makes_with_few_images(benchmark, tmp_path, capsys, quiet_threads):
    """--stream-images 40 wrote val/ images of 4 of the 10 classes only, a tree the imagenet loader refuses."""
    tree = tmp_path / "tree"
    assert benchmark.main(["--parts", "stream", "--stream-make", str(tree), "--stream-images", "40",
                           "--threads", "1"]) == 0
    assert sorted(p.name for p in (tree / "val").iterdir()) == sorted(p.name for p in (tree / "train").iterdir())
    assert benchmark.main(["--parts", "stream", "--stream-root", str(tree), "--stream-seconds", "0.2",
                           "--stream-size", "32", "--threads", "1"]) == 0
    assert "images/s per worker" in capsys.readouterr().out


def test_the_models_part_compares_models_and_names_a_bad_one(benchmark, capsys, quiet_threads):
    assert benchmark.main(["--parts", "models", "--models", "vit_micro:dim=32,heads=2,depth=1", "vit_micro:dim=32,"
                           "heads=2,depth=2", "--models-batch", "4", "--models-steps", "1", "--models-warmup", "0",
                           "--device", "cpu", "--threads", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "images/s   x" in line]
    assert len(rows) == 2 and rows[0].endswith("x1.00 vs vit_micro:dim=32,heads=2,depth=1")
    for spec in ("vit_gigantic", "vit_micro:dim", "vit_micro:width=3"):
        assert benchmark.main(["--parts", "models", "--models", spec, "--device", "cpu", "--threads", "1"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --models {spec}: ") and "Traceback" not in err


# ----------------------------------------------------------------------------- prepare_data.py
def test_prepare_data_needs_a_subcommand_and_names_bad_input(prepare, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        prepare.main([])
    assert stop.value.code == 2
    capsys.readouterr()
    for argv, message in (
            (["split-classes", str(tmp_path / "missing")], "needs train/ and test/ class folders"),
            (["imagenet-val", str(tmp_path / "missing"), str(tmp_path / "labels.csv")], "is not a folder"),
            (["cifar-slice", "--source", str(tmp_path / "none"), "--out", str(tmp_path / "slice")], "CIFAR"),
            (["cifar-slice", "--out", str(tmp_path), "--check", str(tmp_path / "missing")], "is not a folder"),
            (["covariance", str(tmp_path)], "is not a finished run (no DONE)"),
            (["covariance", str(tmp_path), "--allow-unfinished"], "has no checkpoint.pt")):
        assert prepare.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err and err.count("error:") == 1, err
    assert not (tmp_path / "slice").exists()


def test_cifar10_jpeg_6k_builds_from_a_download_already_there(prepare, tmp_path, capsys):
    """CIFAR-10 present (batches.meta): no download; the slice is built from it (md5 checked, so fake pickles
    are refused with one message)."""
    from fake_data import write_cifar10

    source = write_cifar10(tmp_path / "cifar", per_batch=32, test=64)
    assert prepare.main(["cifar10-jpeg-6k", "--cifar10-root", str(source), "--root", str(tmp_path / "slice")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "md5" in err and not (tmp_path / "slice").exists()


def test_split_classes_halves_a_tree_by_class(prepare, tmp_path, capsys):
    from fake_data import write_image_folder

    root = write_image_folder(tmp_path / "slice", classes=("a", "b", "c", "d", "e"), train_per_class=3,
                              test_per_class=2)
    assert prepare.main(["split-classes", str(root), "--first", "2"]) == 0
    for half, classes in (("source", ["a", "b"]), ("target", ["c", "d", "e"])):
        out = tmp_path / f"slice-{half}"
        for split in ("train", "test"):
            assert sorted(p.name for p in (out / split).iterdir()) == classes
    assert "slice-source: a, b (10 files)" in capsys.readouterr().out
    assert prepare.main(["split-classes", str(root)]) == 2  # both halves exist: nothing is overwritten
    assert "exists; remove it first" in capsys.readouterr().err
    assert prepare.main(["split-classes", str(root), "--first", "5"]) == 2
    assert "must leave at least one class on each side of 5" in capsys.readouterr().err

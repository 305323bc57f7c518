"""scripts/conv_compare.py and scripts/stream_throughput.py: bad or missing arguments are one message (exit 2),
never a traceback; the tree stream_throughput --make writes is one its own loader reads."""

import json

import pytest
import torch
import yaml
from helpers import load_script


@pytest.fixture(scope="module")
def conv_compare():
    return load_script("scripts/conv_compare.py")


@pytest.fixture(scope="module")
def stream_throughput():
    return load_script("scripts/stream_throughput.py")


def write_run(root, experiment, init, seed, accs, **init_keys):
    run = root / f"{experiment}-{init}-{seed}-{len(list(root.iterdir())) if root.exists() else 0}"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"experiment": experiment, "seed": seed,
                                                     "init": {"name": init, **init_keys}}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "test_acc": a}) + "\n"
                                               for i, a in enumerate(accs)))
    (run / "DONE").write_text("done\n")
    return run


def test_conv_compare_without_runs_is_one_message(conv_compare, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the default --runs runs/conv does not exist here
    assert conv_compare.main([]) == 2
    err = capsys.readouterr().err
    assert "error: --runs runs/conv: no such directory" in err and "Traceback" not in err
    assert conv_compare.main(["--runs", str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert conv_compare.main(["--runs", str(tmp_path / "empty")]) == 2
    assert "no finished run (DONE) of experiment=proxy_conv_cifar_slice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:  # argparse's own message and status
        conv_compare.main(["--runs"])
    assert stop.value.code == 2


def test_conv_compare_reads_runs_and_names_a_missing_metric(conv_compare, tmp_path, capsys):
    runs = tmp_path / "runs"
    for exp in ("proxy_conv_cifar_slice", "proxy_conv_cifar_slice_frozen"):
        for seed in (0, 1):
            write_run(runs, exp, "default", seed, [50.0, 60.0])
            write_run(runs, exp, "dw_covariance", seed, [51.0, 62.0, 63.0], sigma_first=0.25, sigma_last=1.0)
    broken = write_run(runs, "proxy_conv_cifar_slice", "default", 7, [1.0])
    (broken / "metrics.jsonl").write_text("{not json\n")
    assert conv_compare.main(["--runs", str(runs)]) == 0
    out, err = capsys.readouterr()
    assert "| 2 | 60.00 ± 0.00 | 62.00 ± 0.00 | +2.00 ± 0.00 | 2/2 |" in out  # epochs both arms have
    assert f"left out {broken}" in err
    assert conv_compare.main(["--runs", str(runs), "--metric", "val_acc"]) == 2
    assert "--metric val_acc is not in every run's metrics" in capsys.readouterr().err


def test_stream_throughput_without_a_tree_is_one_message(stream_throughput, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MIMETIC_DATA_WORKERS", "0")
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)  # the script pins 1 thread: not this process
    with pytest.raises(SystemExit) as stop:
        stream_throughput.main([])
    assert stop.value.code == 2 and "give the tree to read (ROOT), or --make DIR" in capsys.readouterr().err
    assert stream_throughput.main([str(tmp_path / "missing"), "--seconds", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "error: ImageNet split not found" in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        stream_throughput.main(["--make", str(tmp_path / "t"), "--images", "0"])


def test_stream_throughput_reads_the_tree_it_makes_with_few_images(stream_throughput, tmp_path, capsys,
                                                                   monkeypatch):
    """--images 40 wrote val/ images of 4 of the 10 classes only, a tree the imagenet loader refuses."""
    monkeypatch.setenv("MIMETIC_DATA_WORKERS", "0")
    monkeypatch.setattr(torch, "set_num_threads", lambda n: None)
    tree = tmp_path / "tree"
    assert stream_throughput.main(["--make", str(tree), "--images", "40"]) == 0
    assert sorted(p.name for p in (tree / "val").iterdir()) == sorted(p.name for p in (tree / "train").iterdir())
    assert stream_throughput.main([str(tree), "--seconds", "0.2", "--size", "32"]) == 0
    assert "images/s per worker" in capsys.readouterr().out

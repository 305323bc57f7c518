"""One process and two (torchrun, gloo, CPU) train the same model, for every family, resume included.

For each family (ViT, ConvMixer with BatchNorm, ConvNeXt, GPT) three runs:

* ``one``: one process, uninterrupted (the reference);
* ``two``: two processes, uninterrupted;
* ``two_resumed``: two processes, stopped by a real SIGTERM mid-epoch 2, then resumed.

``two_resumed`` must equal ``two`` bit for bit (metrics and weights: the resume is exact with
several ranks too), and ``two`` must equal ``one`` to float tolerance (what README promises).
The data are chosen so that shards are uneven and the last training batch of the image runs
holds one sample: one rank's shard is empty there, and it must still take the step.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from fake_wikitext import write_wikitext
from helpers import REPO, TINY, read_metrics, without_timing

LOOP = ["trainer.progress=false", "logger.mode=disabled"]
IMAGE = [*LOOP, "dataset=image_folder", "aug=basic", "trainer.epochs=3", "trainer.batch_size=17",
         "trainer.eval_batch_size=7", "sched.warmup_epochs=1"]
FAMILIES = {
    # 120 training images, batch 17: 8 steps an epoch, the last of one image (one rank gets none).
    "vit": [*TINY, *IMAGE, "init=mimetic"],
    "convmixer": [*IMAGE, "model=convmixer_micro", "model.dim=16", "model.depth=2", "init=dw_covariance"],
    "convnext": [*IMAGE, "model=convnext_micro", "model.dims=[8,16,16,16]", "init=dw_covariance"],
    # Odd global batch (5 windows: shards of 3 and 2), word- and token-level perplexities on uneven shards.
    "gpt": ["model=gpt_micro", "model.dim=32", "model.heads=2", "model.block_size=16", "dataset=wikitext103",
            "dataset.seq_len=16", "dataset.vocab_size=300", "aug=none", "trainer.batch_size=5",
            "trainer.eval_batch_size=7", *LOOP, "trainer.label_smoothing=0", "sched.warmup_epochs=0",
            "trainer.max_steps=40", "trainer.eval_every=10",
            "init=mimetic"],
}
STOP_AFTER = {"vit": 11, "convmixer": 11, "convnext": 11, "gpt": 15}  # mid epoch 2 / between two evaluations
STOP_EPOCH = {"vit": 2, "convmixer": 2, "convnext": 2, "gpt": 1}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(jobs: list[dict], path, processes: int) -> str:
    path.write_text(json.dumps(jobs))
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    prefix = [sys.executable] if processes == 1 else [
        sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", f"--master_port={_free_port()}"]
    done = subprocess.run([*prefix, str(REPO / "tests" / "ddp_jobs.py"), str(path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def family_runs(tmp_path_factory, folder_root):
    base = tmp_path_factory.mktemp("ddp")
    wiki = write_wikitext(base / "wikitext")
    data = {"gpt": [f"dataset.root={wiki}", f"dataset.cache_dir={base / 'cache'}"]}
    args = {name: [*over, *data.get(name, [f"dataset.root={folder_root}"])] for name, over in FAMILIES.items()}
    # The tokenizer and token caches are built once, by the single process, before the ranks read them.
    _launch([{"run_dir": str(base / name / "one"), "overrides": args[name]} for name in FAMILIES],
            base / "one.json", 1)
    two = []
    for name in FAMILIES:
        two += [{"run_dir": str(base / name / "two"), "overrides": args[name]},
                {"run_dir": str(base / name / "two_resumed"), "overrides": args[name], "stop_after": STOP_AFTER[name]},
                {"run_dir": str(base / name / "two_resumed"), "overrides": args[name]}]
    log = _launch(two, base / "two.json", 2)
    return base, log


def _weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_two_processes_train_what_one_does_and_resume_exactly(family_runs, family):
    base, log = family_runs
    one, two, resumed = (base / family / n for n in ("one", "two", "two_resumed"))
    for run_dir in (one, two, resumed):
        assert (run_dir / "DONE").exists(), run_dir
    # Stopped mid-epoch (between evaluations), and resumed there.
    assert f"[rank0] resume at epoch {STOP_EPOCH[family]} step {STOP_AFTER[family]} of" in log
    assert "x 2 processes" in log and "Traceback" not in log

    # Each rank draws its own dropout / drop-path stream, and the checkpoint keeps each one.
    rng = torch.load(two / "checkpoint.pt", weights_only=True)["rng_by_rank"]
    assert len(rng) == 2 and not torch.equal(rng[0]["torch"], rng[1]["torch"])

    # Resumed with two processes = uninterrupted with two processes, bit for bit.
    assert without_timing(read_metrics(resumed)) == without_timing(read_metrics(two))
    wr, wt = _weights(resumed), _weights(two)
    assert all(torch.equal(wr[k], wt[k]) for k in wt)

    # Two processes = one process, to float tolerance: every evaluation's metrics (measured: within 1e-6
    # relative), and the final weights as a whole (measured: 1e-7 to 1.5e-4 relative; AdamW turns rounding
    # in near-zero gradients into +-lr steps, so single small tensors such as biases can differ by ~1 %).
    a, b = read_metrics(one), read_metrics(two)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for key, value in ra.items():
            if key.endswith(("_loss", "_ppl")) or key == "lr":
                assert rb[key] == pytest.approx(value, rel=1e-5), (family, ra["step"], key)
            elif key.endswith("_acc"):  # one sample of 120 / 30 is 0.8 / 3.3 pp
                assert rb[key] == pytest.approx(value, abs=0.01), (family, ra["step"], key)
    w1 = _weights(one)
    floats = [k for k, v in w1.items() if v.is_floating_point()]
    assert all(torch.equal(wt[k], w1[k]) for k in w1 if k not in floats)  # e.g. BatchNorm's step counts
    diff = sum((wt[k].double() - w1[k].double()).square().sum() for k in floats).sqrt()
    norm = sum(w1[k].double().square().sum() for k in floats).sqrt()
    assert diff / norm < 1e-3, (family, float(diff / norm))

"""``trainer.compile=true`` on the CPU: the compiled model trains like the eager one.

torch.compile (inductor, C++ on the CPU) may fuse and reorder floating-point operations, so
the compiled run is compared with the eager run within a tolerance, not bit for bit.
"""

import shutil

import pytest
import torch
from helpers import TINY, composed, read_metrics

from mimetic.train.engine import Precision, train_step

pytestmark = pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                                reason="torch.compile's CPU backend needs a C++ compiler")

ARGS = [*TINY, "experiment=proxy_digits", "trainer.batch_size=64", "trainer.max_steps=6", "trainer.epochs=1",
        "trainer.eval_every=3", "init=mimetic", "seed=0"]


def test_compiled_run_matches_the_eager_run(tmp_path):
    from mimetic.train.run import run

    run(composed(*ARGS, "trainer.compile=false"), run_dir=tmp_path / "eager")
    run(composed(*ARGS, "trainer.compile=true"), run_dir=tmp_path / "compiled")
    eager, compiled = read_metrics(tmp_path / "eager"), read_metrics(tmp_path / "compiled")
    assert [r["step"] for r in compiled] == [r["step"] for r in eager] == [3, 6]
    for e, c in zip(eager, compiled):
        for key in ("train_loss", "test_loss"):
            assert c[key] == pytest.approx(e[key], rel=1e-3), key
        assert abs(c["test_acc"] - e["test_acc"]) <= 1.0


def test_train_step_on_a_compiled_model_takes_the_same_step():
    from timm.models.vision_transformer import VisionTransformer

    from mimetic.train.tasks import Task

    class Classify(Task):
        def training_loss(self, model, batch):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(model(x), y)
            return loss, {"loss": loss.detach() * len(y), "count": torch.tensor(len(y))}

    class Sched:
        def step_update(self, num_updates):
            pass

    def fresh():
        torch.manual_seed(0)
        model = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=2, num_classes=10)
        return model, torch.optim.SGD(model.parameters(), lr=0.1)  # Adam would amplify rounding in ~0 gradients

    x, y = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1)), torch.arange(8)
    precision = Precision.resolve("fp32", torch.device("cpu"))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    out = []
    for compiled in (False, True):
        model, opt = fresh()
        net = torch.compile(model) if compiled else model
        sums = [train_step(net, (x, y), Classify.__new__(Classify), opt, Sched(), scaler, precision=precision,
                           grad_clip=1.0, num_updates=i + 1) for i in range(2)]
        out.append(([float(s["loss"]) for s in sums], [p.detach().clone() for p in model.parameters()]))
    (loss_e, params_e), (loss_c, params_c) = out
    assert loss_c == pytest.approx(loss_e, rel=1e-4)
    for a, b in zip(params_e, params_c):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-5)

"""Whole language-model runs, in process: metrics, perplexities, exact mid-epoch resume."""

import json
import math

import pytest
import torch
from fake_wikitext import write_wikitext
from helpers import composed, read_metrics, signal_after_steps, without_timing

from mimetic.runtime.signals import StopRequested
from mimetic.train.run import run

LM = ["model=gpt_micro", "model.dim=32", "model.heads=2", "model.block_size=16", "dataset=wikitext103",
      "dataset.seq_len=16", "dataset.vocab_size=300", "aug=none", "trainer.batch_size=8", "trainer.eval_batch_size=16",
      "trainer.progress=false", "logger.mode=disabled", "trainer.label_smoothing=0", "sched.warmup_epochs=0"]


@pytest.fixture(scope="module")
def wiki_root(tmp_path_factory):
    return write_wikitext(tmp_path_factory.mktemp("wikitext"))


def lm_args(root, *more):
    return [*LM, f"dataset.root={root}", *more]


def test_two_steps_give_token_and_word_perplexities(tmp_path, wiki_root):
    summary = run(composed(*lm_args(wiki_root, "trainer.max_steps=2", "trainer.eval_every=1", "init=mimetic")),
                  run_dir=tmp_path)
    records = read_metrics(tmp_path)
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        for split in ("val", "test"):
            assert r[f"{split}_ppl"] == pytest.approx(math.exp(r[f"{split}_loss"]))
            assert r[f"{split}_word_ppl"] > r[f"{split}_ppl"]  # more tokens than words: same NLL, fewer units
        assert r["train_ppl"] > 1 and r["tokens_per_s"] > 0 and r["lr"] > 0
    assert summary["primary_metric"] == "test_ppl" and summary["higher_is_better"] is False
    assert {"val_ppl", "test_ppl", "test_word_ppl", "val_word_ppl", "best_test_ppl", "best_val_ppl",
            "mean_tokens_per_s"} <= set(summary)
    assert summary["best_test_ppl"] == min(r["test_ppl"] for r in records)
    chosen = min(records, key=lambda r: r["val_ppl"])  # early stopping on val, read on test
    assert summary["test_ppl_at_best_val"] == chosen["test_ppl"] and summary["step_at_best_val"] == chosen["step"]
    diagnostics = json.loads((tmp_path / "init_diagnostics.json").read_text())
    assert diagnostics["init"]["layers"] == 2 and diagnostics["attention"]["mean"]["vo_diag_mean"] < 0


def test_word_perplexity_uses_the_same_log_likelihood(tmp_path, wiki_root):
    from mimetic.data.wikitext import count_words, read_lines

    run(composed(*lm_args(wiki_root, "trainer.max_steps=1")), run_dir=tmp_path)
    r = read_metrics(tmp_path)[-1]
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(next((wiki_root / ".cache").glob("tokenizer-*.json"))))
    lines = read_lines(wiki_root, "test")
    tokens = sum(len(e.ids) for e in tokenizer.encode_batch(lines, add_special_tokens=False))
    nll = r["test_loss"] * tokens
    assert r["test_word_ppl"] == pytest.approx(math.exp(nll / count_words(lines)), rel=1e-9)


@pytest.mark.parametrize("stop_after", [3, 9])
def test_resume_mid_epoch_matches_an_uninterrupted_run(tmp_path, wiki_root, monkeypatch, stop_after):
    args = lm_args(wiki_root, "trainer.max_steps=12", "trainer.eval_every=4", "init=mimetic", "model.dropout=0.1")
    reference = run(composed(*args), run_dir=tmp_path / "reference")
    with monkeypatch.context() as patch:
        signal_after_steps(patch, stop_after)
        with pytest.raises(StopRequested):
            run(composed(*args), run_dir=tmp_path / "resumed")
    resumed = run(composed(*args), run_dir=tmp_path / "resumed")
    assert without_timing(read_metrics(tmp_path / "resumed")) == without_timing(read_metrics(tmp_path / "reference"))
    assert {k: v for k, v in resumed.items() if "time" not in k and "per_s" not in k} == \
        {k: v for k, v in reference.items() if "time" not in k and "per_s" not in k}
    a = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "reference" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_label_smoothing_smooths_the_training_loss_only():
    """trainer.label_smoothing reaches the LM loss (it was accepted and ignored); every reported number is the NLL."""
    import torch.nn.functional as F

    from mimetic.train.tasks import build_task

    torch.manual_seed(0)
    logits = torch.randn(2, 5, 11, requires_grad=True)
    y = torch.randint(0, 11, (2, 5))
    y[0, :2] = -100  # not scored

    def model(x):
        return logits

    batch = (torch.zeros(2, 5, dtype=torch.long), y)
    cfg = composed(*LM, "dataset.root=/unused", "trainer.label_smoothing=0.2")
    from mimetic.train.config import load_config

    task = build_task("language_modeling", load_config(cfg))
    loss, sums = task.training_loss(model, batch)
    flat, targets = logits.flatten(0, 1), y.flatten()
    assert loss.item() == pytest.approx(F.cross_entropy(flat, targets, label_smoothing=0.2).item(), rel=1e-6)
    nll = F.cross_entropy(flat, targets, reduction="sum")
    assert sums["loss"].item() == pytest.approx(nll.item(), rel=1e-6) and sums["count"].item() == 8
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    evaluation = task.evaluation_sums(model, batch)
    assert evaluation["loss"].item() == pytest.approx(nll.item(), rel=1e-6)  # evaluation: unsmoothed
    empty = task.training_loss(lambda x: logits[:0], (batch[0][:0], y[:0]))  # an empty DDP shard
    assert empty[0].item() == 0 and empty[1]["loss"].item() == 0 and empty[1]["count"].item() == 0


def test_the_run_records_its_data_spec_and_the_analysis_rebuilds_its_model_from_it(tmp_path, wiki_root):
    """Nothing guesses the data spec from weight shapes: the run writes it, train.step0 builds from it."""
    import yaml

    from mimetic.analysis.run_models import model_at_step0, run_spec, trained_model
    from mimetic.train.config import load_config
    from mimetic.train.step0 import initial_model

    cfg = composed(*lm_args(wiki_root, "trainer.max_steps=1", "init=mimetic", "seed=3"))
    run(cfg, run_dir=tmp_path)
    recorded = yaml.safe_load((tmp_path / "config.yaml").read_text())["_run"]["data_spec"]
    assert recorded["task"] == "language_modeling" and recorded["vocab_size"] == 300
    spec = run_spec(tmp_path)
    assert spec.vocab_size == 300
    step0 = model_at_step0(tmp_path).state_dict()
    again = initial_model(load_config(cfg), spec).model.state_dict()  # the same seeded build and init
    assert all(torch.equal(step0[k], again[k]) for k in again)
    trained = trained_model(tmp_path).state_dict()  # loads strictly into the recorded spec's model
    assert any(not torch.equal(trained[k], step0[k]) for k in step0)  # one step moved the weights

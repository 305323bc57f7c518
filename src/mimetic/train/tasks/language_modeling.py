"""Causal language modelling: next-token loss, token- and word-level perplexity.

A batch is ``(inputs, targets)`` (training) or ``(inputs, targets, words)`` (evaluation; see
:class:`mimetic.data.wikitext.EvalWindows`): targets of ``-100`` are not scored. The sums are
the total negative log-likelihood (nats), the number of scored tokens and, for evaluation,
the number of words of the split, so

* ``<split>_loss`` = NLL / tokens (nats per token), ``<split>_ppl`` = exp of it;
* ``<split>_word_ppl`` = exp(NLL / words): the same total log-likelihood spread over the
  split's words (the usual WikiText number), whatever the tokenizer.

The headline metric is ``test_ppl`` (token-level test perplexity, lower is better); tables pick
the recipe on ``val_ppl``. Throughput is in tokens.

``trainer.label_smoothing`` (epsilon) smooths the loss the model is trained on, as for classification:
``(1 - epsilon) * NLL + epsilon * mean over the vocabulary of -log p``. Every reported number stays the
unsmoothed NLL, ``train_loss``/``train_ppl`` included, so perplexities mean the same at any epsilon.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mimetic.train.tasks.base import TASKS, Task


def _exp(x: float) -> float:
    return math.exp(x) if x < 700 else math.inf


class LanguageModeling(Task):
    name = "language_modeling"
    primary_metric = "test_ppl"
    higher_is_better = False
    unit = "tokens"

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def _sums(self, model, x, y) -> tuple[torch.Tensor, torch.Tensor]:
        logits = model(x)
        nll = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=-100, reduction="sum")
        return nll, (y != -100).sum()

    def training_loss(self, model, batch):
        x, y = batch[0], batch[1]
        eps = self.label_smoothing
        if not eps:
            nll, count = self._sums(model, x, y)
            return nll / count.clamp_min(1), {"loss": nll.detach().double(), "count": count}
        # One log-softmax gives both the smoothed loss (backpropagated) and the plain NLL (reported); the
        # loss equals F.cross_entropy(..., label_smoothing=eps).
        logp = model(x).float().flatten(0, 1).log_softmax(-1)
        targets = y.flatten()
        scored = targets != -100
        nll_per_token = -logp.gather(1, targets.clamp_min(0)[:, None])[:, 0]
        uniform_per_token = -logp.mean(1)
        nll = torch.where(scored, nll_per_token, 0.0).sum()
        smoothed = torch.where(scored, (1 - eps) * nll_per_token + eps * uniform_per_token, 0.0).sum()
        count = scored.sum()
        return smoothed / count.clamp_min(1), {"loss": nll.detach().double(), "count": count}

    def evaluation_sums(self, model, batch):
        x, y = batch[0], batch[1]
        nll, count = self._sums(model, x, y)
        sums = {"loss": nll.double(), "count": count}
        if len(batch) > 2:
            sums["words"] = batch[2]
        return sums

    def metrics(self, sums, split):
        loss = sums["loss"] / max(sums["count"], 1)
        out = {f"{split}_loss": loss, f"{split}_ppl": _exp(loss)}
        if sums.get("words"):
            out[f"{split}_word_ppl"] = _exp(sums["loss"] / sums["words"])
        return out

    def count(self, batch):
        return int(batch[0].numel())


TASKS["language_modeling"] = lambda cfg: LanguageModeling(label_smoothing=cfg.trainer.label_smoothing)

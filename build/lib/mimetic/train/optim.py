"""AdamW without decay on norms/biases/position embedding/tokens, and a per-step schedule."""

from __future__ import annotations

from typing import Any

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler


def build_optimizer(model: torch.nn.Module, cfg: Any) -> torch.optim.Optimizer:
    # timm skips weight decay on 1-D tensors (norms, biases) and on the names the model
    # lists in no_weight_decay() (pos_embed, cls_token).
    return create_optimizer_v2(
        model, opt=cfg.name, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas)
    )


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Any, *, epochs: int, steps_per_epoch: int):
    """Linear warmup, then cosine to ``min_lr``; stepped once per optimizer step.

    Warmup never takes more than half of training, so very short runs (a 1-epoch smoke
    test with the 5-epoch default warmup) still warm up and then decay.
    """
    total = epochs * steps_per_epoch
    warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total // 2)
    return CosineLRScheduler(
        optimizer,
        t_initial=max(total - warmup, 1),
        lr_min=cfg.min_lr,
        warmup_t=warmup,
        warmup_lr_init=cfg.warmup_lr,
        warmup_prefix=True,
        t_in_epochs=False,
    )

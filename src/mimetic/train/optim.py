"""Optimizers and learning-rate schedules, registered by name with their typed options."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler

from mimetic.registry import Option, Registry

OPTIMIZERS = Registry("optim")
SCHEDULES = Registry("sched")


@dataclass
class AdamW(Option):
    """The paper's optimizer. No weight decay on norms, biases, position embedding, class token."""

    lr: float = 3e-3
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])

    def problems(self, group: str) -> list[str]:
        out = []
        if not self.lr > 0:
            out.append(f"{group}.lr must be > 0, got {self.lr}")
        if not self.weight_decay >= 0:
            out.append(f"{group}.weight_decay must be >= 0, got {self.weight_decay}")
        if not (len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas)):
            out.append(f"{group}.betas must be two numbers in [0, 1), got {self.betas}")
        return out


@OPTIMIZERS.register("adamw", AdamW, help="AdamW; decay skipped on 1-D tensors and the model's no_weight_decay()")
def build_adamw(model: torch.nn.Module, cfg: AdamW) -> torch.optim.Optimizer:
    # timm skips weight decay on 1-D tensors (norms, biases) and on the names the model
    # lists in no_weight_decay() (pos_embed, cls_token), and leaves out frozen tensors.
    # On CUDA the fused kernel does the whole update in one launch instead of one per tensor group.
    fused = {"fused": True} if on_cuda(model) else {}
    return create_optimizer_v2(model, opt="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.betas),
                               **fused)


def on_cuda(model: torch.nn.Module) -> bool:
    """Whether every trainable tensor is on a CUDA device (what torch's fused AdamW needs)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return bool(params) and all(p.is_cuda for p in params)


@dataclass
class WarmupCosine(Option):
    """Per-step linear warmup, then cosine decay to ``min_lr`` (the paper does not state its schedule)."""

    warmup_epochs: float = 5.0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5

    def problems(self, group: str) -> list[str]:
        out = []
        if not self.warmup_epochs >= 0:
            out.append(f"{group}.warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if not (self.min_lr >= 0 and self.warmup_lr >= 0):
            out.append(f"{group}.min_lr and {group}.warmup_lr must be >= 0")
        return out


@SCHEDULES.register("warmup_cosine", WarmupCosine, help="linear warmup then cosine, stepped every optimizer step")
def build_warmup_cosine(optimizer: torch.optim.Optimizer, cfg: WarmupCosine, *, total_steps: int,
                        steps_per_epoch: int):
    """Warmup never takes more than half of training, so very short runs still warm up and then decay."""
    warmup = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total_steps // 2)
    return CosineLRScheduler(
        optimizer,
        t_initial=max(total_steps - warmup, 1),
        lr_min=cfg.min_lr,
        warmup_t=warmup,
        warmup_lr_init=cfg.warmup_lr,
        warmup_prefix=True,
        t_in_epochs=False,
    )


def build_optimizer(model: torch.nn.Module, cfg: Option) -> torch.optim.Optimizer:
    return OPTIMIZERS.get(cfg.name).fn(model, cfg)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Option, *, total_steps: int, steps_per_epoch: int):
    return SCHEDULES.get(cfg.name).fn(optimizer, cfg, total_steps=total_steps, steps_per_epoch=steps_per_epoch)

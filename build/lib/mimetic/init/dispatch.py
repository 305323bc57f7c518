"""Choose an initialisation by name, as train.py's ``init`` config group does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from mimetic.init.attention import mimetic_attention_
from mimetic.init.pretrained import pretrained_attention_

INIT_NAMES = ("default", "mimetic", "mimetic_qk", "mimetic_vo", "pretrained_attention")


def _field(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def apply_init(model: nn.Module, init_cfg: Any, generator: torch.Generator | None = None) -> dict:
    """Apply the init named by ``init_cfg.name`` to ``model`` (in place); report what was done.

    ``init_cfg`` is any object or mapping with ``name`` and, as needed, ``alpha_qk``,
    ``beta_qk``, ``alpha_vo``, ``beta_vo`` (mimetic*) or ``checkpoint`` (pretrained_attention).
    ``default`` leaves the model's own (timm) init untouched.
    """
    name = _field(init_cfg, "name")
    if name == "default":
        return {"init": name, "layers": 0}
    if name in ("mimetic", "mimetic_qk", "mimetic_vo"):
        layers = mimetic_attention_(
            model,
            alpha_qk=float(_field(init_cfg, "alpha_qk", 0.7)),
            beta_qk=float(_field(init_cfg, "beta_qk", 0.7)),
            alpha_vo=float(_field(init_cfg, "alpha_vo", 0.4)),
            beta_vo=float(_field(init_cfg, "beta_vo", 0.4)),
            qk=name != "mimetic_vo",
            vo=name != "mimetic_qk",
            generator=generator,
        )
        return {"init": name, "layers": layers}
    if name == "pretrained_attention":
        checkpoint = _field(init_cfg, "checkpoint")
        if not checkpoint:
            raise ValueError("init=pretrained_attention needs init.checkpoint=<file or timm model name>")
        return {"init": name, "layers": pretrained_attention_(model, checkpoint), "checkpoint": str(checkpoint)}
    raise ValueError(f"unknown init '{name}'; choose one of {', '.join(INIT_NAMES)}")

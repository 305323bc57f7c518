"""The QK and VO products of a model's attention layers, as the figures use them.

The products are measured through each layer's real forward
(``mimetic.init.diagnostics.attention_products``), so any attention the library can
initialise can be drawn, and a layout mistake cannot make a figure look right:

* QK, per layer and head: ``W_q^h^T W_k^h`` (query dim x key dim), what the head's logits are
  made of (times the module's scale);
* VO, per layer (not per head: the method sets the whole layer's product, and the heads'
  value/output slices only add up to it): ``W_v^T W_o^T`` (value dim x output dim).

The diagonal strength of a product P (d x d) is its cosine similarity with the identity,
``trace(P) / (||P||_F sqrt(d))`` = mean diagonal / RMS row norm. It is scale-free, so trained
weights (which grow) and fresh ones, and layers of different widths, share one axis: +1 for a
positive multiple of I, -1 for a negative one, about 0 (within ~1/sqrt(d)) for i.i.d. noise,
and ``beta / sqrt(alpha^2 + beta^2)`` for the target ``alpha Z + beta I`` (0.71 for the
paper's QK and -0.71 for its VO coefficients; the QK heads' rank-k approximations land lower).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ModelProducts:
    """One model's products: ``qk[layer]`` is (heads, d, d), ``vo[layer]`` is (d, d)."""

    label: str
    qk: list[torch.Tensor]
    vo: list[torch.Tensor]

    @property
    def depth(self) -> int:
        return len(self.qk)

    @property
    def heads(self) -> int:
        return max((q.shape[0] for q in self.qk), default=0)


def model_products(model: nn.Module, label: str) -> ModelProducts:
    """Measure every attention layer of ``model`` (an ``InitError`` names a layer that cannot be)."""
    from mimetic.init.diagnostics import attention_products

    layers = attention_products(model, target_beta_qk=None, target_beta_vo=None)
    return ModelProducts(label, [p.qk.float() for p in layers], [p.vo.float() for p in layers])


def diagonal_strength(product: torch.Tensor) -> float:
    """Cosine similarity of a square ``product`` with the identity (see the module docstring)."""
    p = product.double()
    if p.shape[-1] != p.shape[-2]:
        raise ValueError(f"diagonal strength needs a square product, got {tuple(p.shape)}")
    norm = torch.linalg.norm(p)
    if norm == 0:
        return 0.0
    return (torch.trace(p) / (norm * p.shape[0] ** 0.5)).item()


def strength_by_depth(products: ModelProducts) -> tuple[list[float], list[float]]:
    """Per layer: the QK diagonal strength averaged over heads, and the VO one."""
    qk = [sum(diagonal_strength(h) for h in layer) / len(layer) for layer in products.qk]
    vo = [diagonal_strength(layer) for layer in products.vo]
    return qk, vo

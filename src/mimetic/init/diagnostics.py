"""Measure the QK and VO products that attention layers actually compute.

The products are recovered by pushing basis vectors through each real module (a float64
copy, so the model is untouched):

* QK: one sequence ``[0, e_1, ..., e_d]``; the log attention probabilities give the logits
  up to a per-row constant, and double-differencing against the zero token removes both
  that constant and the biases: ``A[a, b] = (L[a,b] - L[a,0] - L[0,b] + L[0,0]) / scale``
  (causal layers: two orderings, see :func:`mimetic.init.layers.token_logits`).
* VO: each ``e_j`` alone (one token, so the softmax is exactly 1), minus the output for the
  zero token, is row ``j`` of ``B = W_v^T W_o^T``.

A layout mistake anywhere (a transposed factor, swapped q/k rows) therefore shows up here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mimetic.init.attention import PAPER_COEFFICIENTS, attention_layers_or_raise
from mimetic.init.base import InitError
from mimetic.init.depthwise import depthwise_diagnostics
from mimetic.init.dispatch import init_options
from mimetic.init.layers import AttentionAdapter, scan_attention, token_logits


def product_stats(product: torch.Tensor, target_beta: float | None = None) -> dict[str, float]:
    """Summary of a (rows x cols) product against the form ``alpha Z + beta I``.

    * ``diag_mean`` estimates beta (with its sign); ``offdiag_std * sqrt(rows)`` estimates alpha.
    * ``identity_rel_err``: ``||P - diag_mean I|| / ||P||``, the share of the product that is
      not a scaled identity (1 for pure noise, alpha/sqrt(alpha^2+beta^2) for the exact target).
    * ``target_rel_err`` (when ``target_beta`` is given): ``||P - target_beta I|| / ||target_beta I||``.
    * ``transpose_corr``: correlation of ``P[i,j]`` with ``P[j,i]`` off the diagonal; ~0 for
      ``alpha Z + beta I`` with i.i.d. ``Z``, so a symmetrised or doubly transposed product stands out.
    """
    p = product.detach().to("cpu", torch.float64)  # a product measured on an accelerator: statistics on the host
    rows, cols = p.shape
    eye = torch.eye(rows, cols, dtype=torch.float64)
    diag = torch.diagonal(p)
    off = p[eye == 0]
    diag_mean = diag.mean().item()
    stats = {
        "diag_mean": diag_mean,
        "diag_std": diag.std().item() if diag.numel() > 1 else 0.0,
        "offdiag_mean": off.mean().item(),
        "offdiag_std": off.std().item(),
        "alpha_hat": off.std().item() * rows**0.5,
        "identity_rel_err": (torch.linalg.norm(p - diag_mean * eye) / torch.linalg.norm(p)).item(),
        # Products recovered through float64 probes carry ~1e-13 relative noise; count only
        # singular values above 1e-9 of the largest.
        "rank": int(torch.linalg.matrix_rank(p, rtol=1e-9).item()),
    }
    if rows == cols:
        upper = torch.triu(torch.ones(rows, cols, dtype=torch.bool), diagonal=1)
        a, b = p[upper], p.T[upper]
        stats["transpose_corr"] = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    if target_beta is not None:
        target = target_beta * eye
        stats["target_rel_err"] = (torch.linalg.norm(p - target) / torch.linalg.norm(target)).item()
    return stats


@dataclass
class LayerProducts:
    """The products of one attention layer and their statistics."""

    name: str
    kind: str
    qk: torch.Tensor  # (heads, query_dim, key_dim): per-head W_q^i^T W_k^i
    vo: torch.Tensor  # (value_dim, out_dim): W_v^T W_o^T
    qk_stats: list[dict[str, float]] = field(default_factory=list)
    vo_stats: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-ready statistics (no tensors)."""
        return {"name": self.name, "kind": self.kind, "qk": self.qk_stats, "vo": self.vo_stats}


def _basis_with_zero(dim: int, device: torch.device) -> torch.Tensor:
    return torch.cat([torch.zeros(1, dim, dtype=torch.float64), torch.eye(dim, dtype=torch.float64)]).to(device)


def _qk_products(layer: AttentionAdapter) -> torch.Tensor:
    dq, dk = layer.query_dim, layer.key_dim
    device = layer.q_weight().device
    queries = torch.eye(dq, dtype=torch.float64, device=device)
    # self-attention modules need the same tokens on both sides
    keys = None if dq == dk else torch.eye(dk, dtype=torch.float64, device=device)
    return token_logits(layer, queries, keys)  # basis vectors in: the products themselves


def _vo_product(layer: AttentionAdapter) -> torch.Tensor:
    out = layer.value_path(_basis_with_zero(layer.value_dim, layer.v_weight().device)).cpu()
    return out[1:] - out[:1]


def attention_products(
    model: nn.Module,
    *,
    target_beta_qk: float | None = PAPER_COEFFICIENTS.beta_qk,
    target_beta_vo: float | None = PAPER_COEFFICIENTS.beta_vo,
) -> list[LayerProducts]:
    """Per attention layer: the per-head QK products, the VO product and their statistics.

    ``target_beta_*`` only feed the ``target_rel_err`` statistic (VO's target is
    ``-target_beta_vo * I``); pass None to leave it out. Raises :class:`InitError` where
    the model's attention cannot be measured (see ``attention_layers_or_raise``).
    """
    results = []
    for layer in attention_layers_or_raise(model):
        qk = _qk_products(layer)
        vo = _vo_product(layer)
        results.append(
            LayerProducts(
                name=layer.name,
                kind=layer.kind,
                qk=qk,
                vo=vo,
                qk_stats=[product_stats(head, target_beta_qk) for head in qk],
                vo_stats=product_stats(vo, None if target_beta_vo is None else -target_beta_vo),
            )
        )
    return results


def summarize_products(products: list[LayerProducts]) -> dict:
    """Layer summaries plus means over layers (and heads): what train.py logs at step 0."""
    qk_diag = [s["diag_mean"] for p in products for s in p.qk_stats]
    qk_off = [s["offdiag_std"] for p in products for s in p.qk_stats]
    vo_diag = [p.vo_stats["diag_mean"] for p in products]
    vo_off = [p.vo_stats["offdiag_std"] for p in products]

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else float("nan")

    return {
        "layers": [p.summary() for p in products],
        "mean": {
            "qk_diag_mean": mean(qk_diag),
            "qk_offdiag_std": mean(qk_off),
            "vo_diag_mean": mean(vo_diag),
            "vo_offdiag_std": mean(vo_off),
        },
    }


def attention_maps(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Softmax attention of every timm attention layer for input ``x``: a list of (B, heads, N, N).

    Runs the model's real forward (in eval mode, without autograd) with the non-fused
    attention path switched on for the call, so the maps can be read off ``attn_drop``.
    """
    from mimetic.init.layers import TimmFusedAttention, find_attention_layers

    layers = [layer for layer in find_attention_layers(model) if isinstance(layer, TimmFusedAttention)]
    if not layers:
        raise InitError(f"{type(model).__name__} has no timm attention layers to read maps from")
    maps: list[torch.Tensor] = []
    saved = [(layer.module, layer.module.fused_attn) for layer in layers]
    hooks = [layer.module.attn_drop.register_forward_hook(lambda _m, _i, out: maps.append(out.detach()))
             for layer in layers]
    was_training = model.training
    try:
        for module, _ in saved:
            module.fused_attn = False
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
        for module, fused in saved:
            module.fused_attn = fused
        model.train(was_training)
    return maps


def state_snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model.state_dict()``: the ``before`` that :func:`diagnose_init` compares to."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(model: nn.Module, before: dict[str, torch.Tensor]) -> tuple[list[str], int]:
    changed, unchanged = [], 0
    for key, now in model.state_dict().items():
        old = before.get(key)
        same = (
            old is not None
            and old.shape == now.shape
            and old.dtype == now.dtype
            and torch.equal(now.detach(), old.detach().to(now.device))
        )
        if same:
            unchanged += 1
        else:
            changed.append(key)
    return changed, unchanged


def diagnose_init(model: nn.Module, options: Any, before: dict[str, torch.Tensor] | None = None) -> dict:
    """What an init did to ``model``, JSON-ready (what train.py logs at step 0).

    ``options`` is whatever :func:`apply_init` took (an init name, its options, a config
    node). ``before`` is a :func:`state_snapshot` taken before the init.

    * ``init``: the name; ``changed_tensors`` (state-dict keys that differ from ``before``)
      and ``unchanged_count``: both None without ``before``.
    * ``attention``: ``summarize_products(attention_products(model))``, with the init's own
      betas as targets, for an attention init (which needs measurable attention: an
      :class:`InitError` otherwise), and for an init that leaves attention alone when the
      model has measurable attention. A model without attention has no such section; one
      whose attention cannot be measured gets ``attention_unsupported`` (the scan) instead.
    * ``depthwise`` (models with depthwise convs): per layer, the filters' empirical covariance
      against the init's target (:func:`mimetic.init.depthwise.depthwise_diagnostics`).
    * whatever the init's options add through a ``diagnostics(model) -> dict`` method (``init=impulse``:
      ``impulse``, each head's step-0 offset and attention mass on it, see :mod:`mimetic.init.impulse`).
    """
    opts = init_options(options)
    report: dict[str, Any] = {"init": opts.name, "changed_tensors": None, "unchanged_count": None}
    if before is not None:
        report["changed_tensors"], report["unchanged_count"] = _changed(model, before)
    depthwise = depthwise_diagnostics(model, opts, before)  # {} for a model without depthwise convs
    if depthwise:
        report["depthwise"] = depthwise
    own = getattr(opts, "diagnostics", None)  # an init's own step-0 measurements (init=impulse: its offsets)
    if callable(own):
        report.update(own(model))
    betas = {
        "target_beta_qk": getattr(opts, "sign_qk", 1) * getattr(opts, "beta_qk", PAPER_COEFFICIENTS.beta_qk),
        "target_beta_vo": -getattr(opts, "sign_vo", -1) * getattr(opts, "beta_vo", PAPER_COEFFICIENTS.beta_vo),
    }
    if getattr(type(opts), "touches_attention", True):
        report["attention"] = summarize_products(attention_products(model, **betas))
        return report
    scan = scan_attention(model)
    if not scan.ok:
        report["attention_unsupported"] = scan.summary()
    elif scan.layers:
        report["attention"] = summarize_products(attention_products(model, **betas))
    return report


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

Depthwise convolutions are measured too: the empirical covariance of each layer's filters (channels as
the samples) against the covariance the init drew them from (:func:`depthwise_diagnostics`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mimetic.init.attention import PAPER_COEFFICIENTS, attention_layers_or_raise
from mimetic.init.base import InitError
from mimetic.init.covariance import empirical_covariance, neighbour_correlation, relative_error
from mimetic.init.depthwise import find_depthwise_convs
from mimetic.init.dispatch import init_options, run_init
from mimetic.init.layers import (
    AttentionAdapter,
    TimmFusedAttention,
    find_attention_layers,
    scan_attention,
    token_logits,
)
from mimetic.registry import Option


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
    layers: Sequence[AttentionAdapter] | None = None,
) -> list[LayerProducts]:
    """Per attention layer: the per-head QK products, the VO product and their statistics.

    ``target_beta_*`` only feed the ``target_rel_err`` statistic (VO's target is
    ``-target_beta_vo * I``); pass None to leave it out. ``layers``: the model's attention layers
    when already scanned (e.g. what :func:`~mimetic.init.mimetic_attention_` returned); otherwise the
    model is scanned, and :class:`InitError` raised where its attention cannot be measured (see
    ``attention_layers_or_raise``).
    """
    results = []
    for layer in attention_layers_or_raise(model) if layers is None else layers:
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
    """Softmax attention of every self-attention layer for input ``x``: a list of (B, heads, N, N).

    Runs the model's real forward (in eval mode, without autograd). timm layers: with the non-fused attention
    path switched on for the call, the maps are read off ``attn_drop``. Any other supported layer (e.g.
    ``nn.MultiheadAttention`` in torchvision's ViT): the tokens it receives are recorded and its adapter
    recomputes the map from them (in float64).
    """
    layers = find_attention_layers(model)
    if not layers:
        raise InitError(f"{type(model).__name__} has no attention layers to read maps from")
    timm_layers = [layer for layer in layers if isinstance(layer, TimmFusedAttention)]
    other = [layer for layer in layers if not isinstance(layer, TimmFusedAttention)]
    maps: dict[int, torch.Tensor] = {}
    inputs: dict[int, torch.Tensor] = {}

    def keep_map(i):
        return lambda _m, _i, out: maps.setdefault(i, out.detach())

    def keep_input(i, batch_first):
        def hook(_m, args, kwargs):
            tokens = args[0] if args else kwargs["query"]
            inputs.setdefault(i, (tokens if batch_first else tokens.transpose(0, 1)).detach())
        return hook

    index = {id(layer): i for i, layer in enumerate(layers)}
    hooks = [layer.module.attn_drop.register_forward_hook(keep_map(index[id(layer)])) for layer in timm_layers]
    hooks += [layer.module.register_forward_pre_hook(
        keep_input(index[id(layer)], getattr(layer.module, "batch_first", True)), with_kwargs=True)
        for layer in other]
    saved = [(layer.module, layer.module.fused_attn) for layer in timm_layers]
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
    for layer in other:
        i = index[id(layer)]
        if i in inputs:
            maps[i] = torch.stack([layer.attention_log_probs(t, t).exp() for t in inputs[i]]).to(x.dtype)
    return [maps[i] for i in sorted(maps)]


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


def depthwise_diagnostics(model: nn.Module, options: Option, before: dict[str, torch.Tensor] | None = None) -> dict:
    """Per depthwise layer at step 0: the empirical covariance of its filters against the init's target.

    Target: the init's own (``s^2 Sigma_l`` or the transferred covariance) for a depthwise init,
    else i.i.d. taps at the layer's per-tap variance (what PyTorch's/timm's default init draws).
    ``target_rel_err`` = ``||C_hat - target||_F / ||target||_F``; ``expected_rel_err`` is its
    typical value from sampling alone, ``sqrt((||target||_F^2 + tr(target)^2) / C) / ||target||_F``.
    """
    layers = find_depthwise_convs(model)
    if not layers:
        return {}
    scales = []
    for layer in layers:
        w = before.get(layer.weight_name) if before is not None else None
        f = w.reshape(layer.channels, -1) if w is not None else layer.filters()
        scales.append(f.to(torch.float64).pow(2).mean().sqrt().item())
    if getattr(type(options), "touches_depthwise", False):
        targets = options.depthwise_targets(layers, scales)
        kind = options.name
    else:
        targets = [s**2 * torch.eye(layer.kernel[0] * layer.kernel[1], dtype=torch.float64)
                   for layer, s in zip(layers, scales)]
        kind = "iid"
    out = []
    for layer, target in zip(layers, targets):
        cov = empirical_covariance(layer.filters())
        norm = torch.linalg.norm(target).item()
        expected = math.sqrt((norm**2 + torch.trace(target).item() ** 2) / layer.channels) / norm if norm else None
        out.append({
            "name": layer.name, "kernel": list(layer.kernel), "channels": layer.channels,
            "per_tap_std": torch.diagonal(cov).mean().sqrt().item(),
            "target_per_tap_std": torch.diagonal(target).mean().sqrt().item(),
            "neighbour_corr": neighbour_correlation(cov, layer.kernel),
            "target_neighbour_corr": neighbour_correlation(target, layer.kernel),
            "target_rel_err": relative_error(cov, target) if norm else None,
            "expected_rel_err": expected,
        })
    return {"target": kind, "layers": out,
            "mean_target_rel_err": _mean([d["target_rel_err"] for d in out]),
            "mean_neighbour_corr": _mean([d["neighbour_corr"] for d in out])}


def _mean(xs: list) -> float:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else float("nan")


def diagnose_init(model: nn.Module, options: Any, before: dict[str, torch.Tensor] | None = None, *,
                  layers: Sequence[AttentionAdapter] | None = None) -> dict:
    """What an init did to ``model``, JSON-ready (what train.py logs at step 0).

    ``options`` is whatever :func:`apply_init` took (an init name, its options, a config
    node). ``before`` is a :func:`state_snapshot` taken before the init. ``layers``: the attention
    layers the init wrote, when known (what :func:`~mimetic.init.mimetic_attention_` returns; see
    :func:`apply_and_diagnose`): they are measured without scanning the model again.

    * ``init``: the name; ``changed_tensors`` (state-dict keys that differ from ``before``)
      and ``unchanged_count``: both None without ``before``.
    * ``attention``: ``summarize_products(attention_products(model))``, with the init's own
      betas as targets, for an attention init (which needs measurable attention: an
      :class:`InitError` otherwise), and for an init that leaves attention alone when the
      model has measurable attention. A model without attention has no such section; one
      whose attention cannot be measured gets ``attention_unsupported`` (the scan) instead.
    * ``depthwise`` (models with depthwise convs): per layer, the filters' empirical covariance
      against the init's target (:func:`depthwise_diagnostics`).
    * whatever the init's options add through a ``diagnostics(model, layers) -> dict`` method (``layers``: the
      attention layers, or None; ``init=impulse``: ``impulse``, each head's step-0 offset and attention mass on
      it, see :mod:`mimetic.init.impulse`).
    """
    opts = init_options(options)
    report: dict[str, Any] = {"init": opts.name, "changed_tensors": None, "unchanged_count": None}
    if before is not None:
        report["changed_tensors"], report["unchanged_count"] = _changed(model, before)
    depthwise = depthwise_diagnostics(model, opts, before)  # {} for a model without depthwise convs
    if depthwise:
        report["depthwise"] = depthwise
    touches_attention = getattr(type(opts), "touches_attention", True)
    own = getattr(opts, "diagnostics", None)  # an init's own step-0 measurements (init=impulse: its offsets)
    if callable(own):
        if touches_attention and layers is None:
            layers = attention_layers_or_raise(model)
        report.update(own(model, layers))
    betas = {
        "target_beta_qk": getattr(opts, "sign_qk", 1) * getattr(opts, "beta_qk", PAPER_COEFFICIENTS.beta_qk),
        "target_beta_vo": -getattr(opts, "sign_vo", -1) * getattr(opts, "beta_vo", PAPER_COEFFICIENTS.beta_vo),
    }
    if touches_attention:
        report["attention"] = summarize_products(attention_products(model, layers=layers, **betas))
        return report
    if layers is None:
        scan = scan_attention(model)
        if not scan.ok:
            report["attention_unsupported"] = scan.summary()
            return report
        layers = scan.layers
    if layers:
        report["attention"] = summarize_products(attention_products(model, layers=layers, **betas))
    return report


def apply_and_diagnose(model: nn.Module, init_cfg: Any, generator: torch.Generator | None = None) -> dict:
    """Apply the init ``init_cfg`` names and measure what it did: ``{**diagnose_init(...), "init": report}``, what a
    run records at step 0, with the model's attention scanned once (the layers the init wrote are measured)."""
    options = init_options(init_cfg)
    before = state_snapshot(model)
    report, layers = run_init(model, options, generator)
    return {**diagnose_init(model, options, before, layers=layers), "init": report}

"""Mimetic initialization of self-attention (Trockman & Kolter, ICML 2023).

For every attention layer, with ``d`` the model width and ``k`` the head dim:

* QK, per head ``i``: ``W_q^i^T W_k^i = best rank-k approx of (alpha_qk Z_i + beta_qk I)``,
  a fresh ``Z_i`` per head and per layer;
* VO, per layer: ``W_v^T W_o^T = alpha_vo Z - beta_vo I``.

(``nn.Linear`` computes ``x W^T``, so these are the products the forward pass applies:
logits ``x W_q^T W_k x'^T`` and value path ``x W_v^T W_o^T``.) Biases, and every other
tensor of the model, are left as they are.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from mimetic.init.factorize import balanced_factors, identity_plus_noise
from mimetic.init.layers import AttentionAdapter, find_attention_layers, supported_layers_text


def _check_coefficients(**coefficients: float) -> None:
    for name, value in coefficients.items():
        if not math.isfinite(value) or value < 0:
            raise ValueError(
                f"{name} must be a finite number >= 0, got {value!r} "
                "(the sign of each target is fixed by the method: +I for QK, -I for VO)"
            )


def attention_layers_or_raise(model: nn.Module) -> list[AttentionAdapter]:
    layers = find_attention_layers(model)
    if not layers:
        raise ValueError(
            f"{type(model).__name__} has no recognised self-attention layer. Supported: {supported_layers_text()}."
        )
    for layer in layers:
        layer.check_shapes()
    return layers


@torch.no_grad()
def _init_qk(layer: AttentionAdapter, alpha: float, beta: float, generator: torch.Generator | None) -> None:
    q, k = layer.q_weight(), layer.k_weight()
    hd = layer.head_dim
    for head in range(layer.num_heads):
        target = identity_plus_noise(
            layer.query_dim, layer.key_dim, alpha=alpha, beta=beta, noise_dim=layer.query_dim, generator=generator
        )
        left, right = balanced_factors(target, hd, generator=generator)
        rows = slice(head * hd, (head + 1) * hd)
        q[rows].copy_(left.T)  # (W_q^i)^T = U_k S_k^1/2
        k[rows].copy_(right)  # W_k^i = S_k^1/2 V_k^T


@torch.no_grad()
def _init_vo(layer: AttentionAdapter, alpha: float, beta: float, generator: torch.Generator | None) -> None:
    target = identity_plus_noise(
        layer.value_dim, layer.out_dim, alpha=alpha, beta=-beta, noise_dim=layer.query_dim, generator=generator
    )
    left, right = balanced_factors(target, layer.attn_dim, generator=generator)
    layer.v_weight().copy_(left.T)  # W_v^T = U S^1/2
    layer.o_weight().copy_(right.T)  # W_o^T = S^1/2 V^T


def mimetic_attention_(
    model: nn.Module,
    *,
    alpha_qk: float = 0.7,
    beta_qk: float = 0.7,
    alpha_vo: float = 0.4,
    beta_vo: float = 0.4,
    qk: bool = True,
    vo: bool = True,
    generator: torch.Generator | None = None,
) -> int:
    """Mimetic-initialise, in place, every self-attention layer of ``model``.

    Returns the number of layers initialised. Noise is drawn from ``generator`` (torch's
    global RNG if None), layer by layer in module order, the heads' QK noise before the
    layer's VO noise; equal seeds therefore give identical weights.

    Raises ``ValueError`` for a model without recognised attention, a negative or
    non-finite alpha/beta, or a layer whose width does not split into its heads.
    """
    _check_coefficients(alpha_qk=alpha_qk, beta_qk=beta_qk, alpha_vo=alpha_vo, beta_vo=beta_vo)
    layers = attention_layers_or_raise(model)
    for layer in layers:
        if qk:
            _init_qk(layer, alpha_qk, beta_qk, generator)
        if vo:
            _init_vo(layer, alpha_vo, beta_vo, generator)
    return len(layers) if (qk or vo) else 0

"""The method on plain tensors: draw a target product and split it into two factors.

Mimetic init sets a *product* of two weight matrices (query·key, value·projection) to a
target ``alpha * Z + beta * I`` (``Z`` i.i.d. N(0, 1/d)). The product is fixed; its two
factors are found in closed form by SVD, split evenly (``U S^1/2`` and ``S^1/2 V^T``) so
that both factors have the same scale and train at the same speed.

Nothing here knows about modules; :mod:`mimetic.init.attention` maps the factors onto
the weights of real attention layers.
"""

from __future__ import annotations

import math

import torch


def identity_plus_noise(
    rows: int,
    cols: int,
    *,
    alpha: float,
    beta: float,
    noise_dim: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``alpha * Z + beta * I`` as a float64 (rows x cols) matrix.

    ``Z`` has i.i.d. N(0, 1/noise_dim) entries (``noise_dim`` defaults to ``rows``, the
    model width, as in the paper). ``I`` is the rectangular identity when rows != cols
    (e.g. attention whose keys live in another space). ``beta`` carries the sign: pass a
    negative value for the value·projection target ``alpha Z - beta I``.
    """
    noise_dim = rows if noise_dim is None else noise_dim
    device = generator.device if generator is not None else torch.device("cpu")
    z = torch.randn(rows, cols, generator=generator, device=device, dtype=torch.float64)
    z = z.cpu() / math.sqrt(noise_dim)
    return alpha * z + beta * torch.eye(rows, cols, dtype=torch.float64)


def balanced_factors(
    target: torch.Tensor, inner: int, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Factor ``target`` (m x n) as ``left @ right`` with ``left`` m x inner, ``right`` inner x n.

    ``left @ right`` is the best rank-``min(inner, m, n)`` approximation of ``target``
    (Eckart-Young), with the singular values split evenly: ``left = U_r S_r^1/2``,
    ``right = S_r^1/2 V_r^T``.

    When ``inner`` exceeds the rank that ``target`` can have (rectangular layers), the
    spare inner units get a zero column in ``left`` and a random row in ``right``: the
    product is unchanged, and neither factor has a unit that can never receive gradient
    (zeros on both sides would be dead forever).
    """
    m, n = target.shape
    u, s, vh = torch.linalg.svd(target.to(torch.float64), full_matrices=False)
    r = min(inner, s.numel())
    root = s[:r].sqrt()
    left = torch.zeros(m, inner, dtype=torch.float64)
    right = torch.zeros(inner, n, dtype=torch.float64)
    left[:, :r] = u[:, :r] * root
    right[:r] = root[:, None] * vh[:r]
    if inner > r:
        device = generator.device if generator is not None else torch.device("cpu")
        spare = torch.randn(inner - r, n, generator=generator, device=device, dtype=torch.float64).cpu()
        right[r:] = spare * root.mean() / math.sqrt(n)
    return left, right

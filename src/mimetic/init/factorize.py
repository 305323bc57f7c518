"""The method on plain tensors: draw a target product, keep its best rank-k part, split it into two factors.

Mimetic init sets a *product* of two weight matrices (query·key, value·projection) to a target
``alpha * Z + beta * I`` (``Z`` i.i.d. N(0, 1/d)). The product is fixed; its two factors are found
in closed form by SVD, ``T = U S V^T``: the best rank-k approximation keeps the k largest singular
values (Eckart-Young), and they are split evenly, ``left = U_k S_k^1/2`` and ``right = S_k^1/2 V_k^T``,
so that both factors have the same scale and train at the same speed.

This file is the reference: what :func:`mimetic.init.mimetic_attention_` computes with its default
solver on every model this project trains, and what every faster solver (:mod:`mimetic.init.solvers`)
is measured against. Nothing here knows about modules; :mod:`mimetic.init.attention` maps the
factors onto the weights of real attention layers.
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
    """``alpha * Z + beta * I`` as a float64 (rows x cols) matrix on the CPU.

    ``Z`` has i.i.d. N(0, 1/noise_dim) entries (``noise_dim`` defaults to ``rows``, the
    model width, as in the paper), drawn from ``generator`` on its device. ``I`` is the
    rectangular identity when rows != cols (e.g. attention whose keys live in another space).
    ``beta`` carries the sign: pass a negative value for the value·projection target ``alpha Z - beta I``.
    """
    noise_dim = rows if noise_dim is None else noise_dim
    device = generator.device if generator is not None else torch.device("cpu")
    z = torch.randn(rows, cols, generator=generator, device=device, dtype=torch.float64)
    z = z.cpu() / math.sqrt(noise_dim)
    return alpha * z + beta * torch.eye(rows, cols, dtype=torch.float64)


def spare_count(rows: int, cols: int, inner: int) -> int:
    """How many of ``inner`` units a (rows x cols) target cannot fill: ``inner`` minus the rank it can have."""
    return max(inner - min(inner, rows, cols), 0)


def balanced_factors(
    target: torch.Tensor, inner: int, *, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Factor ``target`` (m x n) as ``left @ right`` with ``left`` m x inner, ``right`` inner x n.

    ``left @ right`` is the best rank-``min(inner, m, n)`` approximation of ``target``
    (Eckart-Young), with the singular values split evenly: ``left = U_r S_r^1/2``,
    ``right = S_r^1/2 V_r^T``.

    When ``inner`` exceeds the rank that ``target`` can have (rectangular layers), the
    spare inner units get a zero column in ``left`` and a random row in ``right`` (drawn
    from ``generator`` after the target): the product is unchanged, and neither factor has a
    unit that can never receive gradient (zeros on both sides would be dead forever).
    """
    spare = None
    n_spare = spare_count(*target.shape, inner)
    if n_spare:
        device = generator.device if generator is not None else torch.device("cpu")
        spare = torch.randn(n_spare, target.shape[1], generator=generator, device=device, dtype=torch.float64)
    return balanced_split(target, inner, spare)


def balanced_split(
    target: torch.Tensor, inner: int, spare: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`balanced_factors` with the spare units' raw N(0, 1) draws given (``spare``: spare_count x n).

    Float64 SVD on the CPU; the spare rows of ``right`` are scaled to the mean ``sqrt(s)`` of the
    kept units over ``sqrt(n)``, the size of a kept unit's row entries.
    """
    m, n = target.shape
    u, s, vh = torch.linalg.svd(target.to(torch.float64).cpu(), full_matrices=False)
    r = min(inner, s.numel())
    root = s[:r].sqrt()
    left = torch.zeros(m, inner, dtype=torch.float64)
    right = torch.zeros(inner, n, dtype=torch.float64)
    left[:, :r] = u[:, :r] * root
    right[:r] = root[:, None] * vh[:r]
    if inner > r:
        if spare is None or tuple(spare.shape) != (inner - r, n):
            raise ValueError(f"{inner - r} spare rows of {n} draws are needed for inner={inner} and a {m}x{n} target")
        right[r:] = spare.cpu() * root.mean() / math.sqrt(n)
    return left, right

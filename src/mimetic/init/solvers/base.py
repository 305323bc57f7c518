"""The solver registry: fast ways to compute :func:`mimetic.init.factorize.balanced_factors` of a stack of targets.

The reference, ``"svd"``, is :mod:`mimetic.init.factorize` itself: a float64 LAPACK SVD (gesdd) on the CPU,
O(d^3) per head with a large constant, so a layer costs O(heads * d^3). The registered solvers compute the same
products faster (each file says how, and how close):

* ``"eigh"`` (:mod:`.eigh`) -- exact: the top eigenpairs of the Gram matrix, one head per core on the CPU;
* ``"mixed"`` (:mod:`.eigh`) -- ``"eigh"`` with a float32 eigensolver refined in float64 (products ~1e-6);
* ``"randomized"`` (:mod:`.randomized`) -- opt-in, approximate: randomized subspace iteration.

``"auto"``, the default everywhere, is ``"svd"`` for layers no wider than :data:`AUTO_REFERENCE_MAX_WIDTH` (every
model this project trains below paper scale: their weights stay bit for bit what they always were, at < 0.3 s per
layer) and ``"mixed"`` for wider ones, where the reference would cost seconds to minutes per layer.

A solver is chosen by an argument (``mimetic_attention_(model, solver="eigh")``, ``init.solver=eigh``), never by
state kept here. A registered solver is ``fn(targets, r) -> (left_r, right_r)``: for targets (b x m x n, float64,
on any device) the balanced factors of their best rank-r approximations, (b, m, r) and (b, r, n), on the targets'
device; each target's factors must depend on that target alone (not on its batch-mates), so that the weights do
not depend on how heads are batched or spread over cores.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from mimetic.init import factorize

#: ``"auto"`` keeps the reference ``"svd"`` up to this layer width (query/key/value dims), ``"mixed"`` above it.
AUTO_REFERENCE_MAX_WIDTH = 512

Solver = Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]
#: The fast solvers by name (``"svd"``, the reference, and ``"auto"`` are not entries: see the module docstring).
SOLVERS: dict[str, Solver] = {}


def register_solver(name: str) -> Callable[[Solver], Solver]:
    """Decorator: make ``fn(targets, r) -> (left_r, right_r)`` the solver ``name``."""

    def add(fn: Solver) -> Solver:
        SOLVERS[name] = fn
        return fn

    return add


def solver_names() -> tuple[str, ...]:
    """Every name a ``solver=`` argument accepts: ``"auto"``, the reference ``"svd"``, then the registered ones."""
    return ("auto", "svd", *SOLVERS)


def solver_problem(name: object) -> str | None:
    """Why ``name`` is not a solver (None: it is one)."""
    if name in solver_names():
        return None
    return f"unknown factorisation solver {name!r}; choose one of {', '.join(solver_names())}"


def resolve_solver(name: str, width: int) -> str:
    """The concrete solver ``name`` means for a layer whose widest target side is ``width``."""
    if name != "auto":
        return name
    return "svd" if width <= AUTO_REFERENCE_MAX_WIDTH else "mixed"


def factor_batch(
    targets: torch.Tensor,
    inner: int,
    *,
    solver: str = "svd",
    spares: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`~mimetic.init.factorize.balanced_factors` of each target (b x m x n): ``left`` (b, m, inner), ``right``
    (b, inner, n).

    ``spares`` are the raw draws for the spare inner units (b x spare_count x n, see
    :func:`~mimetic.init.factorize.balanced_factors`); they are required when ``inner`` exceeds min(m, n).
    Results are float64 on the targets' device, except for ``solver="svd"`` (the reference), which
    computes on the CPU and returns CPU tensors.
    """
    problem = solver_problem(solver)
    if problem:
        raise ValueError(problem)
    b, m, n = targets.shape
    r = min(inner, m, n)
    if inner > r and (spares is None or spares.shape != (b, inner - r, n)):
        raise ValueError(f"{inner - r} spare rows per target are needed for inner={inner} and a {m}x{n} target")
    solver = resolve_solver(solver, max(m, n))
    targets = targets.to(torch.float64)
    if solver == "svd":
        pairs = [factorize.balanced_split(t, inner, None if spares is None else spares[i])
                 for i, t in enumerate(targets.cpu())]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    left_r, right_r = SOLVERS[solver](targets, r)
    if inner == r:
        return left_r, right_r
    # The spare rule of balanced_factors: a zero column in left, a random row in right scaled like a kept one.
    left = torch.zeros(b, m, inner, dtype=torch.float64, device=targets.device)
    right = torch.zeros(b, inner, n, dtype=torch.float64, device=targets.device)
    left[:, :, :r] = left_r
    right[:, :r] = right_r
    root_mean = torch.linalg.vector_norm(right_r, dim=-1).mean(dim=-1)  # row norms of S^1/2 V^T are sqrt(s)
    right[:, r:] = spares.to(targets.device) * root_mean[:, None, None] / math.sqrt(n)
    return left, right

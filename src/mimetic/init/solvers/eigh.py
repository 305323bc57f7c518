"""``"eigh"`` and ``"mixed"``: the balanced factors from the top eigenpairs of the Gram matrix.

* ``"eigh"`` -- exact, fast: the Gram matrix T^T T (or T T^T, the smaller side) in float64, then only its top-r
  eigenpairs (LAPACK dsyevr with an index subset on the CPU, one head per core, see :mod:`.lapack` and
  :mod:`.jobs`; batched ``torch.linalg.eigh`` on an accelerator). ``left @ right = T V V^T`` is the same best
  rank-r approximation; measured within ~1e-13 relative of the reference's product. Still O(heads * d^3), with a
  constant ~5x smaller, divided by the number of cores. Singular vectors carry a canonical sign (the
  largest-magnitude entry of each right vector is positive), so CPU and GPU give the same weights up to rounding;
  they differ from the reference's weights by per-unit sign flips (q_j, k_j -> -q_j, -k_j), which leave every
  product, and so the function the layer computes, unchanged.
* ``"mixed"`` -- the same, with the top r + :data:`MIXED_OVERSAMPLE` eigenvectors found in float32 (the
  tridiagonal reduction is memory-bound: float32 halves its traffic) and the cut between the r-th and (r+1)-th
  placed by a float64 Rayleigh-Ritz step in their span. Products within ~1e-6 relative of the float64 result
  (tests/test_init_scale.py checks < 1e-5 against an independent numpy SVD); 1.2x (d = 768) to 1.6x (d = 2048)
  cheaper than ``"eigh"`` per head. A full-rank target (VO) has no cut to place: it is solved as by ``"eigh"``.
"""

from __future__ import annotations

import torch

from mimetic.init.solvers import lapack
from mimetic.init.solvers.base import register_solver

#: Extra eigenvectors the float32 pass of ``"mixed"`` finds beyond the r kept (headroom for Rayleigh-Ritz).
MIXED_OVERSAMPLE = 16


def canonical_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Flip each column of ``vectors`` (..., n, r) so that its largest-magnitude entry is positive."""
    index = vectors.abs().argmax(dim=-2, keepdim=True)
    sign = torch.sign(torch.gather(vectors, -2, index))
    return vectors * torch.where(sign == 0, torch.ones_like(sign), sign)


def _use_lapack(a: torch.Tensor) -> bool:
    """CPU tensors go to LAPACK's partial eigensolver; accelerators to batched ``torch.linalg.eigh``."""
    return a.device.type == "cpu"


def top_eigenvectors(targets: torch.Tensor, r: int, side: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Eigenvectors of the r largest eigenvalues of the Gram matrices of ``targets``, largest first, in ``dtype``.

    ``side="right"``: of T^T T, shape (b, n, r); ``side="left"``: of T T^T, shape (b, m, r). On the CPU,
    numpy's matmul and LAPACK's ?syevr (only the wanted eigenpairs); elsewhere batched ``torch.linalg.eigh``.
    """
    a = targets.to(dtype)
    if side == "left":
        a = a.transpose(-1, -2)
    if _use_lapack(a):  # one target after another: mimetic.init.solvers.jobs spreads them over cores
        return torch.stack([torch.from_numpy(lapack.top_eigh(t.T @ t, r)) for t in a.numpy()])
    _, v = torch.linalg.eigh(a.transpose(-1, -2) @ a)
    return v[..., -r:].flip(-1)


def top_eigenvectors_mixed(targets: torch.Tensor, r: int, side: str) -> torch.Tensor:
    """:func:`top_eigenvectors` from a float32 eigensolver, made float64-accurate where it matters.

    The tridiagonal reduction that dominates an eigensolver is memory-bound: float32 halves its traffic. It finds
    the top ``r + MIXED_OVERSAMPLE`` eigenvectors; a float64 Rayleigh-Ritz step inside their span then separates
    the r-th from the (r+1)-th, which float32 alone cannot where the spectrum is flat. The span holds the true
    top r to ~1e-6, which is what the products inherit (measured in tests/test_init_scale.py).
    """
    size = targets.shape[-1] if side == "right" else targets.shape[-2]
    width = min(r + MIXED_OVERSAMPLE, size)
    q = torch.linalg.qr(top_eigenvectors(targets, width, side, torch.float32).to(torch.float64)).Q
    w = (targets @ q) if side == "right" else (targets.transpose(-1, -2) @ q)  # the Gram is (T Q)^T (T Q)
    _, y = torch.linalg.eigh(w.transpose(-1, -2) @ w)
    return q @ y[..., -r:].flip(-1)


def split_from_right(targets: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Given orthonormal right singular vectors ``v`` (b, n, r): ``left = T V S^-1/2``, ``right = S^1/2 V^T``."""
    tv = targets @ v  # (b, m, r) = U S
    s = torch.linalg.vector_norm(tv, dim=-2)  # (b, r)
    root = s.sqrt()
    safe = torch.where(root > 0, root, torch.ones_like(root))
    left = torch.where(root[:, None, :] > 0, tv / safe[:, None, :], torch.zeros_like(tv))
    return left, root[:, :, None] * v.transpose(-1, -2)


def split_from_left(targets: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Given orthonormal left singular vectors ``u`` (b, m, r): ``left = U S^1/2``, ``right = S^-1/2 U^T T``."""
    ut = u.transpose(-1, -2) @ targets  # (b, r, n) = S V^T
    s = torch.linalg.vector_norm(ut, dim=-1)  # (b, r)
    root = s.sqrt()
    safe = torch.where(root > 0, root, torch.ones_like(root))
    right = torch.where(root[:, :, None] > 0, ut / safe[:, :, None], torch.zeros_like(ut))
    return u * root[:, None, :], right


def _factors(targets: torch.Tensor, r: int, mixed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    m, n = targets.shape[-2:]
    # A full-rank target (VO) keeps every direction: no cut for float32 to narrow down (measured: no faster), so
    # it stays exact.
    top = top_eigenvectors_mixed if mixed and r < min(m, n) else top_eigenvectors
    if n <= m:
        v = canonical_signs(top(targets, r, "right"))
        return split_from_right(targets, v)
    u = top(targets, r, "left")
    # Canonical sign on the right vectors V^T = S^-1 U^T T, as in the n <= m case.
    left, right = split_from_left(targets, u)
    sign = torch.sign(torch.gather(right, -1, right.abs().argmax(dim=-1, keepdim=True)))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return left * sign.transpose(-1, -2), right * sign


@register_solver("eigh")
def eigh_factors(targets: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact balanced rank-r factors from the float64 top-r eigenpairs of each target's Gram matrix."""
    return _factors(targets, r, mixed=False)


@register_solver("mixed")
def mixed_factors(targets: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`eigh_factors` with a float32 eigensolver whose cut is placed in float64 (products ~1e-6)."""
    return _factors(targets, r, mixed=True)

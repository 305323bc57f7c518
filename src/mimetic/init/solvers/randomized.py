"""``"randomized"`` (opt-in, approximate): randomized subspace iteration for the top r.

Halko, Martinsson & Tropp (2011), with :data:`RANDOMIZED_OVERSAMPLE` extra columns and
:data:`RANDOMIZED_POWER_ITERS` power iterations, batched float32 matmuls (the split itself in float64):
O(heads * d^2 * k) = O(d^3) per layer. Its sketch comes from its own generator (seeded with 0 on the targets'
device), never from the caller's, so the noise Z is the same as with the exact solvers. Its product is *not* the
best rank-r approximation: ~15% (d = 192) to ~60% (d = 768) away from it in relative Frobenius norm, as the
spectrum of alpha Z + beta I is flat at the cut, while its residual ||T - P|| is within 0.5% of the optimum and
its mean diagonal within 0.003 (measured in tests/test_init_scale.py). A full-rank product (VO) has nothing to
truncate: the attention inits solve it with ``"eigh"`` when this solver is chosen.
"""

from __future__ import annotations

import torch

from mimetic.init.solvers.base import register_solver
from mimetic.init.solvers.eigh import canonical_signs, split_from_right

RANDOMIZED_OVERSAMPLE = 16
RANDOMIZED_POWER_ITERS = 4


@register_solver("randomized")
def randomized_factors(targets: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced rank-r factors of each target from a randomized range finder (approximate; see the module)."""
    b, m, n = targets.shape
    width = min(r + RANDOMIZED_OVERSAMPLE, m, n)
    sketch = torch.Generator(device=targets.device).manual_seed(0)
    a = targets.to(torch.float32)  # approximate anyway: float32 halves the matmuls' cost, same distance measured
    # One test matrix shared by every target, so a target's factors do not depend on its batch-mates.
    omega = torch.randn(n, width, generator=sketch, device=targets.device, dtype=a.dtype).expand(b, n, width)
    q = torch.linalg.qr(a @ omega).Q
    for _ in range(RANDOMIZED_POWER_ITERS):
        w = torch.linalg.qr(a.transpose(-1, -2) @ q).Q
        q = torch.linalg.qr(a @ w).Q
    _, _, vh = torch.linalg.svd(q.transpose(-1, -2) @ a, full_matrices=False)  # (b, width, n)
    v = torch.linalg.qr(vh[:, :r].transpose(-1, -2).to(targets.dtype)).Q  # re-orthonormalised in float64
    return split_from_right(targets, canonical_signs(v))

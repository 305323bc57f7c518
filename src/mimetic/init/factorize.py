"""The method on plain tensors: draw a target product and split it into two factors.

Mimetic init sets a *product* of two weight matrices (query·key, value·projection) to a
target ``alpha * Z + beta * I`` (``Z`` i.i.d. N(0, 1/d)). The product is fixed; its two
factors are found in closed form by SVD, split evenly (``U S^1/2`` and ``S^1/2 V^T``) so
that both factors have the same scale and train at the same speed.

Nothing here knows about modules; :mod:`mimetic.init.attention` maps the factors onto
the weights of real attention layers.
"""

from __future__ import annotations

import contextlib
import math

import torch

from mimetic.init import lapack


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
    spare = None
    r = min(inner, *target.shape)
    if inner > r:
        device = generator.device if generator is not None else torch.device("cpu")
        spare = torch.randn(inner - r, target.shape[1], generator=generator, device=device, dtype=torch.float64)
    return _svd_factors(target, inner, spare)


def _svd_factors(target: torch.Tensor, inner: int, spare: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference factorisation (float64 SVD on the CPU); ``spare``: raw N(0, 1) draws for the spare units."""
    m, n = target.shape
    u, s, vh = torch.linalg.svd(target.to(torch.float64).cpu(), full_matrices=False)
    r = min(inner, s.numel())
    root = s[:r].sqrt()
    left = torch.zeros(m, inner, dtype=torch.float64)
    right = torch.zeros(inner, n, dtype=torch.float64)
    left[:, :r] = u[:, :r] * root
    right[:r] = root[:, None] * vh[:r]
    if inner > r:
        right[r:] = spare.cpu() * root.mean() / math.sqrt(n)
    return left, right


# --- At scale: the same construction, batched over heads, on the model's device -------------------------------------
#
# ``balanced_factors`` above is the reference: a float64 LAPACK SVD (gesdd) on the CPU, O(d^3) per head with a large
# constant, so a layer costs O(heads * d^3). The solvers below compute the same products faster:
#
# * ``"auto"`` -- the default: ``"svd"`` for layers no wider than ``AUTO_REFERENCE_MAX_WIDTH`` (every model this
#   project trains below paper scale: their weights stay bit for bit what they always were, at < 0.3 s per layer),
#   ``"mixed"`` for wider ones, where the reference would cost seconds to minutes per layer.
# * ``"svd"``  -- the reference, unchanged: float64 SVD on the CPU, head by head. Today's weights, bit for bit.
# * ``"eigh"`` -- exact, fast: the Gram matrix T^T T (or T T^T, the smaller side) in float64, then only its top-r
#   eigenpairs (LAPACK dsyevr with an index subset on the CPU, one head per core, see
#   :mod:`mimetic.init.factor_jobs`; batched ``torch.linalg.eigh`` on an accelerator).
#   ``left @ right = T V V^T`` is the same best rank-r approximation; measured within ~1e-13 relative of the
#   reference's product. Still O(heads * d^3), with a constant ~5x smaller, divided by the number of cores.
#   Singular vectors carry a canonical sign (the largest-magnitude entry of each right vector is positive), so
#   CPU and GPU give the same weights up to rounding; they differ from the reference's weights by per-unit sign
#   flips (q_j, k_j -> -q_j, -k_j), which leave every product, and so the function the layer computes, unchanged.
# * ``"mixed"`` -- the same as ``"eigh"``, with the top r + ``MIXED_OVERSAMPLE`` eigenvectors found in float32 (the
#   tridiagonal reduction is memory-bound: float32 halves its traffic) and the cut between the r-th and (r+1)-th
#   placed by a float64 Rayleigh-Ritz step in their span. Products within ~1e-6 relative of the float64 result
#   (tests/test_init_scale.py checks < 1e-5 against an independent numpy SVD); 1.2x (d = 768) to 1.6x (d = 2048)
#   cheaper than ``"eigh"`` per head. VO targets are full rank, with no cut to place: they use ``"eigh"``.
# * ``"randomized"`` -- opt-in, approximate: randomized subspace iteration for the top r (Halko, Martinsson & Tropp
#   2011) with ``RANDOMIZED_OVERSAMPLE`` extra columns and ``RANDOMIZED_POWER_ITERS`` power iterations, batched
#   float32 matmuls (the split itself in float64): O(heads * d^2 * k) = O(d^3) per layer. Its sketch comes from
#   its own generator (seeded with 0 on the targets' device), never from the caller's, so the noise Z is the same
#   as with the exact solvers. Its product is *not* the best rank-r approximation: ~15% (d = 192) to ~60%
#   (d = 768) away from it in relative Frobenius norm, as the spectrum of alpha Z + beta I is flat at the cut,
#   while its residual ||T - P|| is within 0.5% of the optimum and its mean diagonal within 0.003 (measured in
#   tests/test_init_scale.py). The VO product is full rank: this solver uses "eigh" for it.
#
# Random draws: Z is always drawn from the caller's generator, on *that generator's* device, head by head in the
# documented order, then moved to where the factorisation runs. A CPU generator therefore gives the same Z on every
# machine whatever the model's device; a CUDA generator gives other numbers than a CPU one with the same seed (and
# torch does not promise the same CUDA stream across GPU models or versions).

SOLVERS = ("auto", "svd", "eigh", "mixed", "randomized")
#: Extra eigenvectors the float32 pass of ``"mixed"`` finds beyond the r kept (headroom for Rayleigh-Ritz).
MIXED_OVERSAMPLE = 16
#: ``"auto"`` keeps the reference ``"svd"`` up to this layer width (query/key/value dims), ``"mixed"`` above it.
AUTO_REFERENCE_MAX_WIDTH = 512
RANDOMIZED_OVERSAMPLE = 16
RANDOMIZED_POWER_ITERS = 4
#: Bytes of float64 targets factorised at once (heads are processed in chunks that fit).
CHUNK_BYTES = 256 * 2**20

_solver = "auto"


def current_solver() -> str:
    """The solver :func:`mimetic.init.mimetic_attention_` uses now (``"auto"`` unless set)."""
    return _solver


def resolve_solver(name: str, width: int) -> str:
    """The concrete solver ``name`` means for a layer whose widest target side is ``width``."""
    if name != "auto":
        return name
    return "svd" if width <= AUTO_REFERENCE_MAX_WIDTH else "mixed"


@contextlib.contextmanager
def factor_solver(name: str):
    """Use solver ``name`` (one of :data:`SOLVERS`) for mimetic init inside the ``with`` block.

        with factor_solver("eigh"):
            mimetic_attention_(model, generator=g)
    """
    global _solver
    if name not in SOLVERS:
        raise ValueError(f"unknown factorisation solver {name!r}; choose one of {', '.join(SOLVERS)}")
    previous, _solver = _solver, name
    try:
        yield name
    finally:
        _solver = previous


def _draw_device(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


def spare_count(rows: int, cols: int, inner: int) -> int:
    """How many inner units of a (rows x cols) target get a random ``right`` row (see :func:`balanced_factors`)."""
    return max(inner - min(inner, rows, cols), 0)


def draw_targets(
    count: int,
    rows: int,
    cols: int,
    inner: int,
    *,
    alpha: float,
    beta: float,
    noise_dim: int | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``count`` targets ``alpha Z + beta I`` stacked (count x rows x cols, float64 on ``device``), and their spares.

    Draws in exactly the order the reference makes them: per target its Z, then its spare rows
    (``spare_count`` x cols, raw N(0, 1)) if it has any. ``device`` (CPU if None; CPU for MPS,
    which has no float64) is where the stack lives; the draws themselves happen on the generator's device.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    if device.type == "mps":  # no float64 there: the factorisation runs on the CPU, the weights stay where they are
        device = torch.device("cpu")
    noise_dim = rows if noise_dim is None else noise_dim
    n_spare = spare_count(rows, cols, inner)
    source = _draw_device(generator)
    # Drawn into one preallocated block and scaled in place: the same numbers and the same rounding as
    # ``alpha * (z / sqrt(noise_dim)) + beta * I`` on fresh tensors, at a fraction of the memory traffic.
    z = torch.empty(count, rows, cols, dtype=torch.float64, device=source)
    spares = torch.empty(count, n_spare, cols, dtype=torch.float64, device=source) if n_spare else None
    for i in range(count):
        torch.randn(rows, cols, generator=generator, dtype=torch.float64, device=source, out=z[i])
        if n_spare:
            torch.randn(n_spare, cols, generator=generator, dtype=torch.float64, device=source, out=spares[i])
    targets = z.to(device).div_(math.sqrt(noise_dim)).mul_(alpha)
    targets.diagonal(dim1=-2, dim2=-1).add_(beta)
    return targets, (spares.to(device) if n_spare else None)


def _canonical_signs(vectors: torch.Tensor) -> torch.Tensor:
    """Flip each column of ``vectors`` (..., n, r) so that its largest-magnitude entry is positive."""
    index = vectors.abs().argmax(dim=-2, keepdim=True)
    sign = torch.sign(torch.gather(vectors, -2, index))
    return vectors * torch.where(sign == 0, torch.ones_like(sign), sign)


def _use_lapack(a: torch.Tensor) -> bool:
    """CPU tensors go to LAPACK's partial eigensolver; accelerators to batched ``torch.linalg.eigh``."""
    return a.device.type == "cpu"


def _top_eigenvectors(targets: torch.Tensor, r: int, side: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Eigenvectors of the r largest eigenvalues of the Gram matrices of ``targets``, largest first, in ``dtype``.

    ``side="right"``: of T^T T, shape (b, n, r); ``side="left"``: of T T^T, shape (b, m, r). On the CPU,
    numpy's matmul and LAPACK's ?syevr (only the wanted eigenpairs); elsewhere batched ``torch.linalg.eigh``.
    """
    a = targets.to(dtype)
    if side == "left":
        a = a.transpose(-1, -2)
    if _use_lapack(a):  # one target after another: mimetic.init.factor_jobs spreads them over cores
        return torch.stack([torch.from_numpy(lapack.top_eigh(t.T @ t, r)) for t in a.numpy()])
    _, v = torch.linalg.eigh(a.transpose(-1, -2) @ a)
    return v[..., -r:].flip(-1)


def _top_eigenvectors_mixed(targets: torch.Tensor, r: int, side: str) -> torch.Tensor:
    """:func:`_top_eigenvectors` from a float32 eigensolver, made float64-accurate where it matters.

    The tridiagonal reduction that dominates an eigensolver is memory-bound: float32 halves its traffic. It finds
    the top ``r + MIXED_OVERSAMPLE`` eigenvectors; a float64 Rayleigh-Ritz step inside their span then separates
    the r-th from the (r+1)-th, which float32 alone cannot where the spectrum is flat. The span holds the true
    top r to ~1e-6, which is what the products inherit (measured in tests/test_init_scale.py).
    """
    size = targets.shape[-1] if side == "right" else targets.shape[-2]
    width = min(r + MIXED_OVERSAMPLE, size)
    q = torch.linalg.qr(_top_eigenvectors(targets, width, side, torch.float32).to(torch.float64)).Q
    w = (targets @ q) if side == "right" else (targets.transpose(-1, -2) @ q)  # the Gram is (T Q)^T (T Q)
    _, y = torch.linalg.eigh(w.transpose(-1, -2) @ w)
    return q @ y[..., -r:].flip(-1)


def _split_from_right(targets: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Given orthonormal right singular vectors ``v`` (b, n, r): ``left = T V S^-1/2``, ``right = S^1/2 V^T``."""
    tv = targets @ v  # (b, m, r) = U S
    s = torch.linalg.vector_norm(tv, dim=-2)  # (b, r)
    root = s.sqrt()
    safe = torch.where(root > 0, root, torch.ones_like(root))
    left = torch.where(root[:, None, :] > 0, tv / safe[:, None, :], torch.zeros_like(tv))
    return left, root[:, :, None] * v.transpose(-1, -2)


def _split_from_left(targets: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Given orthonormal left singular vectors ``u`` (b, m, r): ``left = U S^1/2``, ``right = S^-1/2 U^T T``."""
    ut = u.transpose(-1, -2) @ targets  # (b, r, n) = S V^T
    s = torch.linalg.vector_norm(ut, dim=-1)  # (b, r)
    root = s.sqrt()
    safe = torch.where(root > 0, root, torch.ones_like(root))
    right = torch.where(root[:, :, None] > 0, ut / safe[:, :, None], torch.zeros_like(ut))
    return u * root[:, None, :], right


def _factors_eigh(targets: torch.Tensor, r: int, mixed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    m, n = targets.shape[-2:]
    # A full-rank target (VO) keeps every direction: no cut for float32 to narrow down (measured: no faster), so
    # it stays exact.
    top = _top_eigenvectors_mixed if mixed and r < min(m, n) else _top_eigenvectors
    if n <= m:
        v = _canonical_signs(top(targets, r, "right"))
        return _split_from_right(targets, v)
    u = top(targets, r, "left")
    # Canonical sign on the right vectors V^T = S^-1 U^T T, as in the n <= m case.
    left, right = _split_from_left(targets, u)
    sign = torch.sign(torch.gather(right, -1, right.abs().argmax(dim=-1, keepdim=True)))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return left * sign.transpose(-1, -2), right * sign


def _factors_randomized(targets: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor]:
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
    return _split_from_right(targets, _canonical_signs(v))


def factor_batch(
    targets: torch.Tensor,
    inner: int,
    *,
    solver: str = "svd",
    spares: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`balanced_factors` of each target (b x m x n): ``left`` (b, m, inner), ``right`` (b, inner, n).

    ``spares`` are the raw draws for the spare inner units (see :func:`draw_targets`); they are
    required when ``inner`` exceeds min(m, n). Results are float64 on the targets' device, except
    for ``solver="svd"`` (the reference), which computes on the CPU and returns CPU tensors.
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown factorisation solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    b, m, n = targets.shape
    r = min(inner, m, n)
    if inner > r and (spares is None or spares.shape != (b, inner - r, n)):
        raise ValueError(f"{inner - r} spare rows per target are needed for inner={inner} and a {m}x{n} target")
    solver = resolve_solver(solver, max(m, n))
    targets = targets.to(torch.float64)
    if solver == "svd":
        pairs = [_svd_factors(t, inner, None if spares is None else spares[i]) for i, t in enumerate(targets.cpu())]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])
    if solver == "randomized":
        left_r, right_r = _factors_randomized(targets, r)
    else:
        left_r, right_r = _factors_eigh(targets, r, mixed=solver == "mixed")
    if inner == r:
        return left_r, right_r
    left = torch.zeros(b, m, inner, dtype=torch.float64, device=targets.device)
    right = torch.zeros(b, inner, n, dtype=torch.float64, device=targets.device)
    left[:, :, :r] = left_r
    right[:, :r] = right_r
    root_mean = torch.linalg.vector_norm(right_r, dim=-1).mean(dim=-1)  # row norms of S^1/2 V^T are sqrt(s)
    right[:, r:] = spares.to(targets.device) * root_mean[:, None, None] / math.sqrt(n)
    return left, right


def head_chunks(count: int, rows: int, cols: int, budget: int | None = None) -> list[range]:
    """Split ``count`` heads into consecutive ranges whose float64 targets fit in ``budget`` bytes (at least one)."""
    budget = CHUNK_BYTES if budget is None else budget
    size = max(1, budget // max(rows * cols * 8, 1))
    return [range(start, min(start + size, count)) for start in range(0, count, size)]

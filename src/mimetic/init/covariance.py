"""The conv half of the method on plain tensors: a covariance over a filter's taps, and filters drawn from it.

Every depthwise filter ``w`` (k x k taps, row-major) of layer ``l`` is drawn as ``w = s_l L ε`` with ``ε`` ~ N(0, I)
and ``L L^T = Σ_l``, so ``w ~ N(0, s_l^2 Σ_l)``:

* ``Σ_l`` in closed form: ``Σ_pq = exp(-|p - q|^2 / (2 σ_l^2))`` over tap positions ``p``, ``q``
  (:func:`gaussian_covariance`), with ``σ_l`` linear in depth (:func:`depth_sigmas`);
* or learned: the empirical covariance of a trained model's filters, channels as the samples
  (:func:`empirical_covariance`), carried to another kernel size (:func:`map_covariance`) and another depth
  (:func:`layer_index_map`: the source layer at the nearest relative depth);
* ``s_l`` sets the per-tap variance (:func:`with_per_tap_std`): by default the one of the init it replaces.

Nothing here knows about modules: :mod:`mimetic.init.depthwise` finds the depthwise convs of a model and writes
these filters into them. Impossible requests raise ``ValueError``; the inits turn them into ``InitError``.
"""

from __future__ import annotations

import math

import torch

KERNEL_MAPS = ("resize", "crop", "exact")


# ----------------------------------------------------------------------------- the closed form
def gaussian_covariance(kernel_size: int | tuple[int, int], sigma: float) -> torch.Tensor:
    """The k^2 x k^2 (kh*kw square) correlation ``exp(-d^2 / (2 sigma^2))`` between taps, taps row-major.

    Symmetric PSD for every ``sigma > 0`` (a Gaussian kernel), ones on the diagonal;
    ``sigma -> 0`` gives the identity (i.i.d. taps).
    """
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma!r}")
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    ii, jj = torch.meshgrid(torch.arange(kh, dtype=torch.float64), torch.arange(kw, dtype=torch.float64),
                            indexing="ij")
    pos = torch.stack([ii.flatten(), jj.flatten()], dim=1)
    d2 = torch.cdist(pos, pos).pow(2)
    return torch.exp(-d2 / (2.0 * float(sigma) ** 2))


def depth_sigmas(num_layers: int, sigma_first: float, sigma_last: float) -> list[float]:
    """``sigma_l`` for each of ``num_layers`` depthwise layers: linear from first to last."""
    if num_layers <= 1:
        return [float(sigma_first)] * max(num_layers, 0)
    return [sigma_first + (sigma_last - sigma_first) * i / (num_layers - 1) for i in range(num_layers)]


def with_per_tap_std(cov: torch.Tensor, std: float) -> torch.Tensor:
    """``cov`` rescaled so that its mean per-tap variance (mean diagonal) is ``std^2``: structure kept, size set."""
    return cov * (std**2 / torch.diagonal(cov).mean().item())


# ----------------------------------------------------------------------------- sampling and measuring
def covariance_factor(cov: torch.Tensor) -> torch.Tensor:
    """``F`` with ``F F^T = cov`` (eigendecomposition, negative rounding clipped): works for singular ``cov``."""
    cov = (cov.to(torch.float64) + cov.to(torch.float64).T) / 2
    values, vectors = torch.linalg.eigh(cov)
    return vectors * values.clamp_min(0).sqrt()


def sample_filters(cov: torch.Tensor, channels: int, scale: float = 1.0,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """``channels`` independent draws of ``N(0, scale^2 cov)``: a (channels, taps) float64 tensor."""
    factor = covariance_factor(cov)
    z = torch.randn(channels, factor.shape[0], generator=generator, dtype=torch.float64)
    return scale * z @ factor.T


def empirical_covariance(filters: torch.Tensor) -> torch.Tensor:
    """Covariance over taps of (channels, taps) filters, channels as the samples (centred, /(C-1))."""
    f = filters.detach().to(torch.float64).reshape(filters.shape[0], -1)
    if f.shape[0] < 2:
        raise ValueError("an empirical covariance needs at least 2 channels")
    return torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def relative_error(estimate: torch.Tensor, target: torch.Tensor) -> float:
    """``||estimate - target||_F / ||target||_F``."""
    return (torch.linalg.norm(estimate - target) / torch.linalg.norm(target)).item()


def neighbour_correlation(cov: torch.Tensor, kernel: tuple[int, int]) -> float:
    """Mean correlation of horizontally/vertically adjacent taps (NaN for a 1 x 1 kernel)."""
    kh, kw = kernel
    sd = torch.diagonal(cov).clamp_min(1e-300).sqrt()
    corr = cov / sd[:, None] / sd[None, :]
    vals = [corr[i * kw + j, i * kw + j + 1] for i in range(kh) for j in range(kw - 1)]
    vals += [corr[i * kw + j, (i + 1) * kw + j] for i in range(kh - 1) for j in range(kw)]
    return torch.stack(vals).mean().item() if vals else float("nan")


# ----------------------------------------------------------------------------- transfer: kernel size and depth
def _axis_map(source: int, target: int, how: str) -> torch.Tensor:
    """(target, source) linear map of one kernel axis: center-aligned linear interpolation or a centred crop."""
    if source == target:
        return torch.eye(source, dtype=torch.float64)
    if how == "exact":
        raise ValueError(f"kernel size {target} does not match the source's {source} (kernel_map=exact); use "
                         "kernel_map=resize or crop")
    if how == "crop":
        if target > source or (source - target) % 2:
            raise ValueError(f"cannot crop a {source}-tap kernel axis to {target} taps (crop needs a smaller kernel "
                             "with the same parity); use kernel_map=resize")
        off = (source - target) // 2
        return torch.eye(source, dtype=torch.float64)[off:off + target]
    if source == 1:
        raise ValueError(f"cannot map a 1-tap source kernel axis to {target} taps: it has no spatial structure")
    out = torch.zeros(target, source, dtype=torch.float64)
    for t in range(target):
        x = min(max((t + 0.5) * source / target - 0.5, 0.0), source - 1.0)
        lo = min(int(math.floor(x)), source - 2)
        frac = x - lo
        out[t, lo], out[t, lo + 1] = 1 - frac, frac
    return out


def map_covariance(cov: torch.Tensor, source_kernel: tuple[int, int], target_kernel: tuple[int, int],
                   kernel_map: str = "resize") -> torch.Tensor:
    """A covariance over ``source_kernel`` taps carried to ``target_kernel`` taps (stays symmetric PSD).

    ``resize``: both axes linearly interpolated (center-aligned, like an image resize),
    ``R Sigma R^T`` with ``R = Rh (x) Rw``, then rescaled to keep the mean per-tap variance;
    ``crop``: the marginal covariance of the central taps (exact for a Gaussian);
    ``exact``: sizes must match. Raises ``ValueError`` when the map is impossible.
    """
    if kernel_map not in KERNEL_MAPS:
        raise ValueError(f"kernel_map={kernel_map!r} is not one of: {', '.join(KERNEL_MAPS)}")
    source_kernel, target_kernel = tuple(source_kernel), tuple(target_kernel)
    if source_kernel == target_kernel:
        return cov.to(torch.float64)
    r = torch.kron(_axis_map(source_kernel[0], target_kernel[0], kernel_map),
                   _axis_map(source_kernel[1], target_kernel[1], kernel_map))
    out = r @ cov.to(torch.float64) @ r.T
    if kernel_map == "resize":
        out = out * (torch.diagonal(cov).mean() / torch.diagonal(out).mean())
    return (out + out.T) / 2


def layer_index_map(source_layers: int, target_layers: int) -> list[int]:
    """For each target layer, the source layer at the nearest relative depth (``l / (L - 1)``)."""
    if source_layers < 1:
        raise ValueError("the source has no depthwise layers")
    if target_layers <= 1 or source_layers == 1:
        return [0] * target_layers
    # half rounds up (Python's round() would send 0.5 to 0 but 1.5 to 2)
    return [math.floor(i * (source_layers - 1) / (target_layers - 1) + 0.5) for i in range(target_layers)]

"""Covariance initialisation of depthwise convolution filters (the talk's convolutional half).

Every depthwise conv (``groups == in_channels == out_channels > 1``) gets, independently per
channel ``c``, a filter ``w_{l,c} ~ N(0, s_l^2 Sigma_l)`` with a k^2 x k^2 covariance over its taps.

* ``dw_covariance`` (closed form): ``Sigma_l[(i,j),(m,n)] = exp(-((i-m)^2 + (j-n)^2) / (2 sigma_l^2))``,
  ``sigma_l`` linear in depth from ``sigma_first`` (first depthwise layer) to ``sigma_last`` (last).
  What is the paper's and what is the project's: the authors' patent (US 2025/0104193) states a
  per-layer variance value that increases with depth and a block covariance built from it; the
  Gaussian (squared-exponential) kernel in tap distance, the linear schedule and the scale rule
  are the project's reading of it (the exact formula could not be read).
* ``dw_covariance_transfer``: Sigma_l is the empirical covariance of a trained model's
  depthwise filters (channels are the samples), read from a file written by
  ``scripts/covariance_from_run.py`` or straight from a run dir / checkpoint; layers are mapped
  by relative depth, kernels of another size are resized (or cropped).
* ``s_l`` (``scale=None``): the per-tap standard deviation of the weights the init replaces
  (their RMS), i.e. the default init's per-tap variance: PyTorch's Kaiming-uniform gives
  1/(3 k^2) (ConvMixer), timm's ConvNeXt trunc_normal std 0.02.

Only the filters (``weight``) are written; biases stay as they are.

As a library::

    from mimetic.init import depthwise_covariance_
    depthwise_covariance_(model, sigma_first=0.25, sigma_last=1.0, generator=torch.Generator().manual_seed(0))

Composite inits ``<attention init>+<conv init>`` (e.g. ``init=mimetic+dw_covariance``) apply
both on models that have attention and depthwise convs, with the keys of both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, make_dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

import mimetic.init.attention  # noqa: F401  (the attention inits the composites pair with)
import mimetic.init.pretrained  # noqa: F401
from mimetic.init.base import INITS, InitError
from mimetic.init.source_run import source_model
from mimetic.registry import Option

COVARIANCE_FORMAT = "mimetic-dw-covariance/1"
KERNEL_MAPS = ("resize", "crop", "exact")
RESCALES = ("default", "learned")


# ----------------------------------------------------------------------------- pure functions
def gaussian_covariance(kernel_size: int | tuple[int, int], sigma: float) -> torch.Tensor:
    """The k^2 x k^2 (kh*kw square) correlation ``exp(-d^2 / (2 sigma^2))`` between taps, taps row-major.

    Symmetric PSD for every ``sigma > 0`` (a Gaussian kernel), ones on the diagonal;
    ``sigma -> 0`` gives the identity (i.i.d. taps).
    """
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise InitError(f"sigma must be a finite number > 0, got {sigma!r}")
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
        raise InitError("an empirical covariance needs at least 2 channels")
    return torch.cov(f.T).reshape(f.shape[1], f.shape[1])


def relative_error(estimate: torch.Tensor, target: torch.Tensor) -> float:
    """``||estimate - target||_F / ||target||_F``."""
    return (torch.linalg.norm(estimate - target) / torch.linalg.norm(target)).item()


def _axis_map(source: int, target: int, how: str) -> torch.Tensor:
    """(target, source) linear map of one kernel axis: center-aligned linear interpolation or a centred crop."""
    if source == target:
        return torch.eye(source, dtype=torch.float64)
    if how == "exact":
        raise InitError(f"kernel size {target} does not match the source's {source} (kernel_map=exact); use "
                        "kernel_map=resize or crop")
    if how == "crop":
        if target > source or (source - target) % 2:
            raise InitError(f"cannot crop a {source}-tap kernel axis to {target} taps (crop needs a smaller kernel "
                            "with the same parity); use kernel_map=resize")
        off = (source - target) // 2
        return torch.eye(source, dtype=torch.float64)[off:off + target]
    if source == 1:
        raise InitError(f"cannot map a 1-tap source kernel axis to {target} taps: it has no spatial structure")
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
    ``exact``: sizes must match. Raises :class:`InitError` when the map is impossible.
    """
    if kernel_map not in KERNEL_MAPS:
        raise InitError(f"kernel_map={kernel_map!r} is not one of: {', '.join(KERNEL_MAPS)}")
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
        raise InitError("the source has no depthwise layers")
    if target_layers <= 1 or source_layers == 1:
        return [0] * target_layers
    # half rounds up (Python's round() would send 0.5 to 0 but 1.5 to 2)
    return [math.floor(i * (source_layers - 1) / (target_layers - 1) + 0.5) for i in range(target_layers)]


# ----------------------------------------------------------------------------- module adapters
@dataclass
class DepthwiseConv:
    """One depthwise convolution of a model: its (C, 1, kh, kw) filters seen as (C, kh*kw)."""

    name: str
    module: nn.Module

    @staticmethod
    def matches(module: nn.Module) -> bool:
        return (isinstance(module, nn.Conv2d) and module.groups > 1
                and module.groups == module.in_channels == module.out_channels)

    @property
    def channels(self) -> int:
        return self.module.out_channels

    @property
    def kernel(self) -> tuple[int, int]:
        return tuple(self.module.kernel_size)

    @property
    def weight_name(self) -> str:
        return f"{self.name}.weight" if self.name else "weight"

    def filters(self) -> torch.Tensor:
        return self.module.weight.detach().reshape(self.channels, -1)

    def write(self, filters: torch.Tensor) -> None:
        w = self.module.weight
        with torch.no_grad():
            w.copy_(filters.reshape(w.shape).to(device=w.device, dtype=w.dtype))


def find_depthwise_convs(model: nn.Module) -> list[DepthwiseConv]:
    """Every depthwise ``nn.Conv2d`` of ``model`` (``groups == in == out > 1``), in module (depth) order."""
    return [DepthwiseConv(name, m) for name, m in model.named_modules() if DepthwiseConv.matches(m)]


def _layers_or_raise(model: nn.Module) -> list[DepthwiseConv]:
    layers = find_depthwise_convs(model)
    if not layers:
        raise InitError(f"{type(model).__name__} has no depthwise convolutions (nn.Conv2d with groups == "
                        "in_channels == out_channels > 1); a depthwise-covariance init has nothing to initialise")
    meta = [layer.name for layer in layers if layer.module.weight.is_meta]
    if meta:
        raise InitError(f"depthwise convs {', '.join(meta)} are on the meta device; materialise the model first")
    return layers


def default_scale(layer: DepthwiseConv) -> float:
    """Per-tap std of the weights the init replaces (their RMS): the default init's, for a fresh model."""
    rms = layer.filters().to(torch.float64).pow(2).mean().sqrt().item()
    if not rms > 0:
        raise InitError(f"{layer.weight_name} is all zeros, so the default per-tap variance cannot be matched; "
                        "pass scale=<per-tap std>")
    return rms


def _scale_problems(scale: Any, key: str) -> list[str]:
    if scale is None:
        return []
    ok = isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0
    return [] if ok else [f"{key} must be a finite number > 0 (or null: the default init's per-tap std), got {scale!r}"]


def _sigma_problems(options: Any, group: str) -> list[str]:
    out = []
    for key in ("sigma_first", "sigma_last"):
        value = getattr(options, key)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        if not ok:
            out.append(f"{group}.{key} must be a finite number > 0 (the tap-distance length scale), got {value!r}")
    return out


def depthwise_covariance_(model: nn.Module, *, sigma_first: float, sigma_last: float, scale: float | None = None,
                          generator: torch.Generator | None = None) -> int:
    """Initialise, in place, every depthwise conv of ``model`` from the closed-form covariance.

    Layer ``l`` of ``L`` (module order) gets ``N(0, s_l^2 Sigma(sigma_l))`` per channel, with
    ``sigma_l`` linear from ``sigma_first`` to ``sigma_last`` and ``s_l = scale``, or, when
    ``scale`` is None, the RMS of the layer's current weights (the default init's per-tap std).
    Returns the number of layers initialised. Raises :class:`InitError`, before writing
    anything, for sigma <= 0, a bad scale, or a model without depthwise convs.
    """
    _check_sigmas(sigma_first, sigma_last, scale)
    return len(_closed_form(model, sigma_first, sigma_last, scale, generator))


def _check_sigmas(sigma_first: float, sigma_last: float, scale: float | None) -> None:
    problems = _sigma_problems(_Sigmas(sigma_first, sigma_last), "") + _scale_problems(scale, "scale")
    if problems:
        raise InitError("; ".join(p.lstrip(".") for p in problems))


@dataclass
class _Sigmas:
    sigma_first: float
    sigma_last: float


def closed_form_targets(layers: list[DepthwiseConv], sigma_first: float, sigma_last: float,
                        scales: list[float]) -> list[torch.Tensor]:
    """``s_l^2 Sigma(sigma_l)`` for each layer."""
    sigmas = depth_sigmas(len(layers), sigma_first, sigma_last)
    return [s**2 * gaussian_covariance(layer.kernel, sig) for layer, sig, s in zip(layers, sigmas, scales)]


def _closed_form(model: nn.Module, sigma_first: float, sigma_last: float, scale: float | None,
                 generator: torch.Generator | None) -> list[dict]:
    layers = _layers_or_raise(model)
    scales = [scale if scale is not None else default_scale(layer) for layer in layers]
    sigmas = depth_sigmas(len(layers), sigma_first, sigma_last)
    samples = [sample_filters(gaussian_covariance(layer.kernel, sig), layer.channels, s, generator)
               for layer, sig, s in zip(layers, sigmas, scales)]
    for layer, filters in zip(layers, samples):  # all drawn (and checked) before anything is written
        layer.write(filters)
    return [{"name": layer.name, "kernel": list(layer.kernel), "sigma": sig, "scale": s}
            for layer, sig, s in zip(layers, sigmas, scales)]


# ----------------------------------------------------------------------------- learned covariances
@dataclass
class LayerCovariance:
    """The empirical covariance of one trained depthwise layer."""

    name: str
    kernel: tuple[int, int]
    channels: int
    cov: torch.Tensor  # (taps, taps) float64
    mean: torch.Tensor  # (taps,) mean filter (recorded, not used by the init)

    def to_dict(self) -> dict:
        return {"name": self.name, "kernel": list(self.kernel), "channels": self.channels,
                "cov": self.cov.clone(), "mean": self.mean.clone()}


def _module_of(key: str) -> str:
    return key.rsplit(".", 1)[0] if "." in key else ""


def depthwise_weights_in_state(state: dict[str, torch.Tensor],
                               model: nn.Module | None = None) -> list[tuple[str, torch.Tensor]]:
    """Depthwise filters in a state dict, in its (module) order.

    With ``model`` (the architecture the state belongs to, e.g. rebuilt on the meta device from its
    run's config, :func:`mimetic.init.source_run.source_model`): exactly the weights of its depthwise
    convs (``groups == in == out > 1``), read off the module structure.

    Without it, from the shapes alone: ``*.weight`` of shape (C, 1, kh, kw), C > 1, kh*kw > 1, the shape
    a depthwise Conv2d has; but a dense conv on a 1-channel input (a grayscale stem, a ViT's patch
    embedding) has that shape too. What tells them apart is the input: a depthwise conv filters C
    channels that an earlier layer produced, while a 1-input-channel conv is fed by the image. So a
    candidate counts only if a tensor of an earlier module (in the state dict's order, which
    ``state_dict()`` and so every torch checkpoint keeps as module order) has C outputs (rows).
    """
    if model is not None:
        names = {layer.weight_name for layer in find_depthwise_convs(model)}
        return [(k, v) for k, v in state.items() if k in names]
    found, rows_before, rows_here, module = [], set(), set(), None
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        if _module_of(key) != module:  # a new module: what the previous one produced is now "earlier"
            rows_before |= rows_here
            rows_here, module = set(), _module_of(key)
        if (key.endswith("weight") and value.dim() == 4 and value.shape[1] == 1 and value.shape[0] > 1
                and value.shape[2] * value.shape[3] > 1 and value.shape[0] in rows_before):
            found.append((key, value))
        if value.dim() >= 1:
            rows_here.add(int(value.shape[0]))
    return found


def covariances_from_state(state: dict[str, torch.Tensor], source: str = "",
                           model: nn.Module | None = None) -> list[LayerCovariance]:
    """Per depthwise layer of a state dict, the empirical covariance of its filters (channels = samples).

    ``model``: the state's architecture, when known (see :func:`depthwise_weights_in_state`)."""
    found = depthwise_weights_in_state(state, model)
    if not found:
        raise InitError(f"{source or 'the state dict'} holds no depthwise conv filters (no '*.weight' of shape "
                        "(C, 1, kh, kw) with C > 1): train a model with depthwise convs (e.g. model=convmixer_micro) "
                        "and point at its run")
    out = []
    for name, w in found:
        f = w.detach().to(torch.float64).reshape(w.shape[0], -1)
        out.append(LayerCovariance(name.removesuffix(".weight"), (w.shape[2], w.shape[3]), w.shape[0],
                                   empirical_covariance(f), f.mean(0)))
    return out


def _model_state(path: Path) -> dict[str, torch.Tensor]:
    from mimetic.runtime.checkpoint import load

    state = load(path)
    if "model" not in state:
        raise InitError(f"{path} has no 'model' state")
    return state["model"]


def load_covariances(path: str | Path) -> list[LayerCovariance]:
    """Covariances from a file written by ``scripts/covariance_from_run.py``, a run dir, or its checkpoint."""
    p = Path(str(path)).expanduser()
    if p.is_dir():
        for candidate in (p / "dw_covariance.pt", p / "checkpoint.pt"):
            if candidate.is_file():
                p = candidate
                break
        else:
            raise InitError(f"{path} holds neither dw_covariance.pt nor checkpoint.pt; run "
                            f"scripts/covariance_from_run.py {path} or point at a finished run")
    if not p.is_file():
        raise InitError(f"{path}: no such file; write one with scripts/covariance_from_run.py <run dir> --out FILE")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        raise InitError(f"{p} is not a readable covariance file or checkpoint ({type(err).__name__})") from None
    if isinstance(blob, dict) and blob.get("format") == COVARIANCE_FORMAT:
        layers = [LayerCovariance(d["name"], tuple(d["kernel"]), int(d["channels"]), d["cov"].to(torch.float64),
                                  d["mean"].to(torch.float64)) for d in blob["layers"]]
        if not layers:
            raise InitError(f"{p} holds no depthwise layers")
        return layers
    if isinstance(blob, dict) and "model" in blob:
        state = _model_state(p)
        return covariances_from_state(state, str(p), source_model(p, state))  # a run's: its structure decides
    if isinstance(blob, dict) and blob and all(isinstance(v, torch.Tensor) for v in blob.values()):
        return covariances_from_state(blob, str(p))
    raise InitError(f"{p} is neither a covariance file ({COVARIANCE_FORMAT}) nor a checkpoint with a model state")


def save_covariances(layers: list[LayerCovariance], path: str | Path, source: str = "") -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": COVARIANCE_FORMAT, "source": source, "layers": [c.to_dict() for c in layers]}, path)
    return path


def transfer_targets(layers: list[DepthwiseConv], source: list[LayerCovariance], kernel_map: str = "resize",
                     rescale: str = "default",
                     scales: list[float] | None = None) -> tuple[list[torch.Tensor], list[int]]:
    """The covariance each target layer gets from ``source`` (relative depth, kernel map, rescale)."""
    index = layer_index_map(len(source), len(layers))
    targets = []
    for i, (layer, j) in enumerate(zip(layers, index)):
        cov = map_covariance(source[j].cov, source[j].kernel, layer.kernel, kernel_map)
        if rescale == "default":
            s = scales[i] if scales is not None else default_scale(layer)
            cov = cov * (s**2 / torch.diagonal(cov).mean().item())
        targets.append(cov)
    return targets, index


# ----------------------------------------------------------------------------- registered inits
@dataclass
class DwCovarianceOptions(Option):
    """``init=dw_covariance``: closed-form covariance, sigma linear in depth; ``scale`` null = the default
    init's per-tap std. Defaults 0.25 -> 1.0: the best of 7 settings on a 10% validation split of the
    CIFAR-10 slice with the CPU ConvMixer (one seed, 500 images: +0.8 pp over default, within noise;
    never chosen on test), see results/conv_proxy.md."""

    touches_attention: ClassVar[bool] = False
    touches_depthwise: ClassVar[bool] = True
    sigma_first: float = 0.25
    sigma_last: float = 1.0
    scale: float | None = None

    def problems(self, group: str) -> list[str]:
        return _sigma_problems(self, group) + _scale_problems(self.scale, f"{group}.scale")

    def depthwise_targets(self, layers: list[DepthwiseConv], scales: list[float]) -> list[torch.Tensor]:
        return closed_form_targets(layers, self.sigma_first, self.sigma_last,
                                   [self.scale if self.scale is not None else s for s in scales])


@INITS.register("dw_covariance", DwCovarianceOptions,
                help="depthwise filters ~ N(0, s^2 exp(-d^2/2sigma^2)), sigma linear in depth")
def _dw_covariance(model: nn.Module, options: DwCovarianceOptions, generator: torch.Generator | None) -> dict:
    layers = _closed_form(model, options.sigma_first, options.sigma_last, options.scale, generator)
    return {"init": options.name, "layers": len(layers), "depthwise": layers}


@dataclass
class DwTransferOptions(Option):
    """``init=dw_covariance_transfer``: covariances learned by a trained model (``path``: a file from
    scripts/covariance_from_run.py, a run dir or a checkpoint). ``kernel_map``: resize | crop | exact;
    ``rescale``: default (match the replaced init's per-tap variance: structure only) | learned (keep magnitude)."""

    touches_attention: ClassVar[bool] = False
    touches_depthwise: ClassVar[bool] = True
    path: str = ""
    kernel_map: str = "resize"
    rescale: str = "default"

    def problems(self, group: str) -> list[str]:
        out = []
        if not str(self.path).strip():
            out.append(f"{group}=dw_covariance_transfer needs {group}.path=<covariance file from "
                       "scripts/covariance_from_run.py, or a finished run dir>")
        elif not Path(str(self.path)).expanduser().exists():
            out.append(f"{group}.path={self.path}: no such file or directory")
        if self.kernel_map not in KERNEL_MAPS:
            out.append(f"{group}.kernel_map={self.kernel_map!r} is not one of: {', '.join(KERNEL_MAPS)}")
        if self.rescale not in RESCALES:
            out.append(f"{group}.rescale={self.rescale!r} is not one of: {', '.join(RESCALES)}")
        return out

    def depthwise_targets(self, layers: list[DepthwiseConv], scales: list[float]) -> list[torch.Tensor]:
        return transfer_targets(layers, load_covariances(self.path), self.kernel_map, self.rescale, scales)[0]


def depthwise_covariance_transfer_(model: nn.Module, path: str | Path, *, kernel_map: str = "resize",
                                   rescale: str = "default", generator: torch.Generator | None = None) -> int:
    """Initialise every depthwise conv of ``model`` from learned covariances (see :class:`DwTransferOptions`)."""
    return _dw_transfer(model, DwTransferOptions(name="dw_covariance_transfer", path=str(path),
                                                 kernel_map=kernel_map, rescale=rescale), generator)["layers"]


@INITS.register("dw_covariance_transfer", DwTransferOptions,
                help="depthwise filters ~ N(0, covariance learned by a trained model), mapped by relative depth")
def _dw_transfer(model: nn.Module, options: DwTransferOptions, generator: torch.Generator | None) -> dict:
    problems = options.problems("init")
    if problems:
        raise InitError("; ".join(problems))
    layers = _layers_or_raise(model)
    source = load_covariances(options.path)
    scales = [default_scale(layer) for layer in layers] if options.rescale == "default" else None
    targets, index = transfer_targets(layers, source, options.kernel_map, options.rescale, scales)
    samples = [sample_filters(cov, layer.channels, 1.0, generator) for layer, cov in zip(layers, targets)]
    for layer, filters in zip(layers, samples):
        layer.write(filters)
    return {"init": options.name, "layers": len(layers), "path": str(options.path),
            "depthwise": [{"name": layer.name, "kernel": list(layer.kernel), "source": source[j].name,
                           "source_kernel": list(source[j].kernel),
                           "per_tap_std": torch.diagonal(cov).mean().sqrt().item()}
                          for layer, j, cov in zip(layers, index, targets)]}


# ----------------------------------------------------------------------------- diagnostics
def _neighbour_corr(cov: torch.Tensor, kernel: tuple[int, int]) -> float:
    """Mean correlation of horizontally/vertically adjacent taps."""
    kh, kw = kernel
    sd = torch.diagonal(cov).clamp_min(1e-300).sqrt()
    corr = cov / sd[:, None] / sd[None, :]
    vals = [corr[i * kw + j, i * kw + j + 1] for i in range(kh) for j in range(kw - 1)]
    vals += [corr[i * kw + j, (i + 1) * kw + j] for i in range(kh - 1) for j in range(kw)]
    return torch.stack(vals).mean().item() if vals else float("nan")


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
            "neighbour_corr": _neighbour_corr(cov, layer.kernel),
            "target_neighbour_corr": _neighbour_corr(target, layer.kernel),
            "target_rel_err": relative_error(cov, target) if norm else None,
            "expected_rel_err": expected,
        })
    return {"target": kind, "layers": out,
            "mean_target_rel_err": _mean([d["target_rel_err"] for d in out]),
            "mean_neighbour_corr": _mean([d["neighbour_corr"] for d in out])}


def _mean(xs: list) -> float:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else float("nan")


# ----------------------------------------------------------------------------- composites
def register_composite_init(attention: str, depthwise: str) -> str:
    """Register ``<attention>+<depthwise>``: the keys of both, attention first, then the filters.

    Built in: ``mimetic+dw_covariance`` and ``mimetic+dw_covariance_transfer``; any other pair of
    registered names is one call away. Returns the new name.
    """
    ea, ed = INITS.get(attention), INITS.get(depthwise)
    if not getattr(ea.schema, "touches_attention", False) or not getattr(ed.schema, "touches_depthwise", False):
        raise InitError(f"{attention}+{depthwise}: the first must be an attention init, the second a depthwise init")
    name = f"{attention}+{depthwise}"
    if name in INITS:
        return name

    def problems(self, group: str) -> list[str]:
        return ea.schema.problems(self, group) + ed.schema.problems(self, group)

    schema = make_dataclass(
        f"Composite_{attention}_{depthwise}", [], bases=(ed.schema, ea.schema),
        namespace={"touches_attention": True, "touches_depthwise": True, "problems": problems,
                   "__doc__": f"``init={name}``: {attention} on attention, then {depthwise} on depthwise convs."})

    def both(model: nn.Module, options: Option, generator: torch.Generator | None) -> dict:
        ra = ea.fn(model, options, generator)
        rd = ed.fn(model, options, generator)
        return {"init": options.name, "layers": ra.get("layers", 0) + rd.get("layers", 0),
                "attention": ra, "depthwise": rd}

    INITS.add(name, schema, both, help=f"{attention} on attention layers, then {depthwise} on depthwise convs")
    return name


register_composite_init("mimetic", "dw_covariance")
register_composite_init("mimetic", "dw_covariance_transfer")

"""Covariance initialisation of depthwise convolution filters (the talk's convolutional half): the layers, the inits.

Every depthwise conv (``groups == in_channels == out_channels > 1``) gets, independently per
channel ``c``, a filter ``w_{l,c} ~ N(0, s_l^2 Sigma_l)`` with a k^2 x k^2 covariance over its taps
(the math: :mod:`mimetic.init.covariance`).

* ``dw_covariance`` (closed form): ``Sigma_l[(i,j),(m,n)] = exp(-((i-m)^2 + (j-n)^2) / (2 sigma_l^2))``,
  ``sigma_l`` linear in depth from ``sigma_first`` (first depthwise layer) to ``sigma_last`` (last).
  What is the paper's and what is the project's: the authors' patent (US 2025/0104193) states a
  per-layer variance value that increases with depth and a block covariance built from it; the
  Gaussian (squared-exponential) kernel in tap distance, the linear schedule and the scale rule
  are the project's reading of it (the exact formula could not be read).
* ``dw_covariance_transfer``: Sigma_l is the empirical covariance of a trained model's
  depthwise filters (channels are the samples), from a covariance file written by
  ``scripts/prepare_data.py covariance``, a checkpoint, a run dir or a state dict
  (:mod:`mimetic.init.covariance_files`); layers are mapped by relative depth, kernels of another
  size are resized (or cropped).
* ``s_l`` (``scale=None``): the per-tap standard deviation of the weights the init replaces
  (their RMS), i.e. the default init's per-tap variance: PyTorch's Kaiming-uniform gives
  1/(3 k^2) (ConvMixer), timm's ConvNeXt trunc_normal std 0.02.

Only the filters (``weight``) are written; biases stay as they are.

As a library::

    from mimetic.init import depthwise_covariance_
    depthwise_covariance_(model, sigma_first=0.25, sigma_last=1.0, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from mimetic.init.base import INITS, InitError
from mimetic.init.covariance import (
    KERNEL_MAPS,
    depth_sigmas,
    gaussian_covariance,
    layer_index_map,
    map_covariance,
    sample_filters,
    with_per_tap_std,
)
from mimetic.init.covariance_files import (
    LayerCovariance,
    covariances_from_state,
    read_covariance_source,
)
from mimetic.init.sources import source_model
from mimetic.registry import Option

RESCALES = ("default", "learned")


# ----------------------------------------------------------------------------- the layers
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


def depthwise_layers_or_raise(model: nn.Module, what: str = "a depthwise-covariance init") -> list[DepthwiseConv]:
    """The depthwise convs of ``model``, or an :class:`InitError` when there are none (``what`` would have nothing
    to initialise) or they are on the meta device."""
    layers = find_depthwise_convs(model)
    if not layers:
        raise InitError(f"{type(model).__name__} has no depthwise convolutions (nn.Conv2d with groups == "
                        f"in_channels == out_channels > 1); {what} has nothing to initialise")
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


def _write_all(layers: list[DepthwiseConv], samples: list[torch.Tensor]) -> None:
    for layer, filters in zip(layers, samples):  # all drawn (and checked) before anything is written
        layer.write(filters)


# ----------------------------------------------------------------------------- closed form: dw_covariance
def _positive_problem(value: Any, key: str, what: str) -> list[str]:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    return [] if ok else [f"{key} must be a finite number > 0 ({what}), got {value!r}"]


def _covariance_problems(sigma_first: Any, sigma_last: Any, scale: Any, prefix: str = "") -> list[str]:
    out = []
    for key, value in (("sigma_first", sigma_first), ("sigma_last", sigma_last)):
        out += _positive_problem(value, f"{prefix}{key}", "the tap-distance length scale")
    if scale is not None:
        out += _positive_problem(scale, f"{prefix}scale", "or null: the default init's per-tap std")
    return out


def closed_form_targets(layers: list[DepthwiseConv], sigma_first: float, sigma_last: float,
                        scales: list[float]) -> list[torch.Tensor]:
    """``s_l^2 Sigma(sigma_l)`` for each layer."""
    sigmas = depth_sigmas(len(layers), sigma_first, sigma_last)
    return [s**2 * gaussian_covariance(layer.kernel, sig) for layer, sig, s in zip(layers, sigmas, scales)]


def _closed_form(model: nn.Module, sigma_first: float, sigma_last: float, scale: float | None,
                 generator: torch.Generator | None) -> list[dict]:
    layers = depthwise_layers_or_raise(model)
    scales = [scale if scale is not None else default_scale(layer) for layer in layers]
    sigmas = depth_sigmas(len(layers), sigma_first, sigma_last)
    _write_all(layers, [sample_filters(gaussian_covariance(layer.kernel, sig), layer.channels, s, generator)
                        for layer, sig, s in zip(layers, sigmas, scales)])
    return [{"name": layer.name, "kernel": list(layer.kernel), "sigma": sig, "scale": s}
            for layer, sig, s in zip(layers, sigmas, scales)]


def depthwise_covariance_(model: nn.Module, *, sigma_first: float, sigma_last: float, scale: float | None = None,
                          generator: torch.Generator | None = None) -> int:
    """Initialise, in place, every depthwise conv of ``model`` from the closed-form covariance.

    Layer ``l`` of ``L`` (module order) gets ``N(0, s_l^2 Sigma(sigma_l))`` per channel, with
    ``sigma_l`` linear from ``sigma_first`` to ``sigma_last`` and ``s_l = scale``, or, when
    ``scale`` is None, the RMS of the layer's current weights (the default init's per-tap std).
    Returns the number of layers initialised. Raises :class:`InitError`, before writing
    anything, for sigma <= 0, a bad scale, or a model without depthwise convs.
    """
    problems = _covariance_problems(sigma_first, sigma_last, scale)
    if problems:
        raise InitError("; ".join(problems))
    return len(_closed_form(model, sigma_first, sigma_last, scale, generator))


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
        return _covariance_problems(self.sigma_first, self.sigma_last, self.scale, f"{group}.")

    def depthwise_targets(self, layers: list[DepthwiseConv], scales: list[float]) -> list[torch.Tensor]:
        return closed_form_targets(layers, self.sigma_first, self.sigma_last,
                                   [self.scale if self.scale is not None else s for s in scales])


@INITS.register("dw_covariance", DwCovarianceOptions,
                help="depthwise filters ~ N(0, s^2 exp(-d^2/2sigma^2)), sigma linear in depth")
def _dw_covariance(model: nn.Module, options: DwCovarianceOptions, generator: torch.Generator | None) -> dict:
    layers = _closed_form(model, options.sigma_first, options.sigma_last, options.scale, generator)
    return {"init": options.name, "layers": len(layers), "depthwise": layers}


# ----------------------------------------------------------------------------- learned: dw_covariance_transfer
CovarianceSource = str | Path | dict | list  # a file or run dir, a state dict, or the covariances themselves


def learned_covariances(source: CovarianceSource, *, skeleton: nn.Module | None = None,
                        label: str = "") -> list[LayerCovariance]:
    """The learned covariances a transfer samples from, one per depthwise layer of the source, in depth order.

    ``source``: a covariance file, a checkpoint, a bare state-dict file or a run directory (a path); a state
    dict (``label`` names it in messages); or a list of :class:`~mimetic.init.covariance_files.LayerCovariance`
    (returned as is). ``skeleton``: the source's architecture (e.g. rebuilt on the meta device), which tells
    which of its tensors are depthwise filters; without it, a checkpoint's is asked of the registered source
    readers (:mod:`mimetic.init.sources`: a run directory's config records it), and otherwise the shapes decide.
    """
    if isinstance(source, list):
        return source
    if isinstance(source, dict):
        state = source
    else:
        found = read_covariance_source(source)
        if found.covariances is not None:
            return found.covariances
        state, label = found.state, str(found.path)
        if skeleton is None and found.checkpoint:
            known = source_model(found.path, state)
            skeleton = known.model if known is not None else None
    names = {layer.weight_name for layer in find_depthwise_convs(skeleton)} if skeleton is not None else None
    return covariances_from_state(state, label, names)


def transfer_targets(layers: list[DepthwiseConv], source: list[LayerCovariance], kernel_map: str = "resize",
                     rescale: str = "default",
                     scales: list[float] | None = None) -> tuple[list[torch.Tensor], list[int]]:
    """The covariance each target layer gets from ``source`` (relative depth, kernel map, rescale)."""
    index = layer_index_map(len(source), len(layers))
    targets = []
    for i, (layer, j) in enumerate(zip(layers, index)):
        try:
            cov = map_covariance(source[j].cov, source[j].kernel, layer.kernel, kernel_map)
        except ValueError as err:  # an impossible kernel map: the fix is a key of this init
            raise InitError(str(err)) from None
        if rescale == "default":
            cov = with_per_tap_std(cov, scales[i] if scales is not None else default_scale(layer))
        targets.append(cov)
    return targets, index


def _transfer_problems(kernel_map: Any, rescale: Any, prefix: str = "") -> list[str]:
    out = []
    if kernel_map not in KERNEL_MAPS:
        out.append(f"{prefix}kernel_map={kernel_map!r} is not one of: {', '.join(KERNEL_MAPS)}")
    if rescale not in RESCALES:
        out.append(f"{prefix}rescale={rescale!r} is not one of: {', '.join(RESCALES)}")
    return out


def _path_problems(path: Any, group: str) -> list[str]:
    if not str(path).strip():
        return [f"{group}=dw_covariance_transfer needs {group}.path=<covariance file from "
                "scripts/prepare_data.py covariance, or a finished run dir>"]
    if not Path(str(path)).expanduser().exists():
        return [f"{group}.path={path}: no such file or directory"]
    return []


def _transfer(model: nn.Module, source: CovarianceSource, skeleton: nn.Module | None, kernel_map: str, rescale: str,
              generator: torch.Generator | None) -> list[dict]:
    layers = depthwise_layers_or_raise(model)
    covariances = learned_covariances(source, skeleton=skeleton)
    scales = [default_scale(layer) for layer in layers] if rescale == "default" else None
    targets, index = transfer_targets(layers, covariances, kernel_map, rescale, scales)
    _write_all(layers, [sample_filters(cov, layer.channels, 1.0, generator) for layer, cov in zip(layers, targets)])
    return [{"name": layer.name, "kernel": list(layer.kernel), "source": covariances[j].name,
             "source_kernel": list(covariances[j].kernel), "per_tap_std": torch.diagonal(cov).mean().sqrt().item()}
            for layer, j, cov in zip(layers, index, targets)]


def depthwise_covariance_transfer_(model: nn.Module, source: CovarianceSource, *, skeleton: nn.Module | None = None,
                                   kernel_map: str = "resize", rescale: str = "default",
                                   generator: torch.Generator | None = None) -> int:
    """Initialise every depthwise conv of ``model`` from learned covariances (see :class:`DwTransferOptions`).

    ``source`` and ``skeleton``: see :func:`learned_covariances`. Returns the number of layers initialised;
    raises :class:`InitError`, before writing anything, for a bad key, a missing or unfitting source, or a
    model without depthwise convs.
    """
    problems = _path_problems(source, "init") if isinstance(source, (str, Path)) else []
    problems += _transfer_problems(kernel_map, rescale, "init.")
    if problems:
        raise InitError("; ".join(problems))
    return len(_transfer(model, source, skeleton, kernel_map, rescale, generator))


@dataclass
class DwTransferOptions(Option):
    """``init=dw_covariance_transfer``: covariances learned by a trained model (``path``: a file from
    scripts/prepare_data.py covariance, a run dir or a checkpoint). ``kernel_map``: resize | crop | exact;
    ``rescale``: default (match the replaced init's per-tap variance: structure only) | learned (keep magnitude)."""

    touches_attention: ClassVar[bool] = False
    touches_depthwise: ClassVar[bool] = True
    path: str = ""
    kernel_map: str = "resize"
    rescale: str = "default"

    def problems(self, group: str) -> list[str]:
        return _path_problems(self.path, group) + _transfer_problems(self.kernel_map, self.rescale, f"{group}.")

    def depthwise_targets(self, layers: list[DepthwiseConv], scales: list[float]) -> list[torch.Tensor]:
        return transfer_targets(layers, learned_covariances(self.path), self.kernel_map, self.rescale, scales)[0]


@INITS.register("dw_covariance_transfer", DwTransferOptions,
                help="depthwise filters ~ N(0, covariance learned by a trained model), mapped by relative depth")
def _dw_transfer(model: nn.Module, options: DwTransferOptions, generator: torch.Generator | None) -> dict:
    problems = options.problems("init")
    if problems:
        raise InitError("; ".join(problems))
    layers = _transfer(model, options.path, None, options.kernel_map, options.rescale, generator)
    return {"init": options.name, "layers": len(layers), "path": str(options.path), "depthwise": layers}

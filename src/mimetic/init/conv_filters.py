"""Impulse and box filters for depthwise convolutions (ConvMixer inits of the impulse line of work; issue 22).

Zheng, Li, Lucey (arXiv 2404.01139, code ``osiriszjq/structured_init``: ``timm/models/convmixer.py``,
``SpatialConv2d_init``) report that a ConvMixer whose depthwise filters are *random impulses* (one tap set,
the tap drawn per channel) and never trained comes within ~1% of one with trained filters; their code also
has *box* filters (``n`` taps set per channel, a random subset; ``n = k^2`` is the plain box / average
filter) and a "trainable" switch. Here:

* ``init=dw_impulse`` / :func:`depthwise_impulse_`: each channel's ``k x k`` filter is zero except one tap.
  ``assign=random`` (default, their code): the tap is drawn uniformly per channel; ``assign=cycle``: channel
  ``c`` takes tap ``c mod k^2`` (every tap used equally often, row-major).
* ``init=dw_box`` / :func:`depthwise_box_`: ``taps`` taps set to the same value per channel: null (default)
  = all ``k^2`` (the box filter, identical in every channel); a number ``n`` = a random subset of ``n`` taps
  per channel (their ``box<n>``; ``n = 1`` is ``dw_impulse``).

Scale (``norm``): every filter gets the same L2 norm; null (default) = the RMS L2 norm of the filters the
init replaces, i.e. the default init's: ``sqrt(k^2 * per-tap variance)``, ``1/sqrt(3)`` for PyTorch's
Kaiming-uniform ``U(-1/k, 1/k)`` (ConvMixer), ``0.02 k`` for timm ConvNeXt's trunc-normal 0.02. Why the norm
(not a per-tap variance, which is meaningless for one-hot filters): a filter's L2 norm is the gain of the
conv on uncorrelated inputs, so the layer's output scale at step 0 is the default's. Their code uses the
value ``1/sqrt(k)`` per impulse (L2 norm ``1/sqrt(k)``) and ``1/sqrt(n k)`` per box tap (L2 norm
``1/sqrt(k)`` too): the same as ours for ``k = 3`` with PyTorch's default init, smaller for larger kernels.
``norm=1`` gives value-1 impulses (each channel an exact shifted copy of its input); ``norm=1/k`` gives the
average filter (taps sum to 1).

Only the filters (``weight``) are written; biases keep the model's init (their code draws them as
PyTorch's default does). Frozen or trained is the model's switch, not the init's:
``model.freeze_depthwise=true`` keeps these filters exactly as written (their ``trainable=False``).

Diagnostics (:func:`mimetic.init.diagnose_init`): the filters' empirical covariance over channels is
compared with this init's own: for ``n`` of ``K = k^2`` taps set to ``v`` at random,
``E[w_p w_q] = v^2 n/K`` (p = q) or ``v^2 n(n-1)/(K(K-1))`` (p != q), ``E[w_p] = v n / K``; a full box has
zero covariance (every channel the same filter).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from mimetic.init.base import INITS, InitError
from mimetic.init.depthwise import DepthwiseConv, depthwise_layers_or_raise
from mimetic.registry import Option

IMPULSE_ASSIGNS = ("random", "cycle")


def _norm_problems(norm: Any, key: str) -> list[str]:
    if norm is None:
        return []
    ok = isinstance(norm, (int, float)) and not isinstance(norm, bool) and math.isfinite(norm) and norm > 0
    return [] if ok else [f"{key} must be a finite number > 0 (each filter's L2 norm), or null (the replaced "
                          f"filters' RMS norm), got {norm!r}"]


def _taps_problems(taps: Any, key: str) -> list[str]:
    if taps is None:
        return []
    ok = isinstance(taps, int) and not isinstance(taps, bool) and taps >= 1
    return [] if ok else [f"{key} must be an integer >= 1 (taps set per filter) or null (all: the box filter), "
                          f"got {taps!r}"]


def default_norm(layer: DepthwiseConv) -> float:
    """RMS L2 norm of the layer's current filters: the default init's filter norm for a fresh model."""
    f = layer.filters().to(torch.float64)
    rms = f.pow(2).sum(dim=1).mean().sqrt().item()
    if not (math.isfinite(rms) and rms > 0):
        raise InitError(f"{layer.weight_name} is all zeros (or not finite), so there is no default filter norm to "
                        "match; pass norm=<each filter's L2 norm> (init.norm=...)")
    return rms


def tap_filters(channels: int, taps_total: int, taps_set: int, value: float, *, assign: str = "random",
                generator: torch.Generator | None = None) -> torch.Tensor:
    """(channels, taps_total) float64 filters with ``taps_set`` taps equal to ``value`` per channel, the rest 0.

    ``taps_set == taps_total`` is the box filter (no draw); ``taps_set == 1`` with ``assign="cycle"`` puts
    channel ``c``'s impulse at tap ``c mod taps_total`` (no draw); otherwise the taps are a uniform random
    subset per channel (one draw of ``channels x taps_total`` uniforms from ``generator``, or ``randint``
    for single impulses).
    """
    out = torch.zeros(channels, taps_total, dtype=torch.float64)
    if taps_set >= taps_total:
        out.fill_(value)
    elif taps_set == 1:
        if assign == "cycle":
            index = torch.arange(channels) % taps_total
        else:
            index = torch.randint(taps_total, (channels,), generator=generator)
        out[torch.arange(channels), index] = value
    else:
        order = torch.rand(channels, taps_total, generator=generator, dtype=torch.float64).argsort(dim=1)
        out.scatter_(1, order[:, :taps_set], value)
    return out


def tap_covariance(taps_total: int, taps_set: int, value: float) -> torch.Tensor:
    """Covariance over channels of filters with ``taps_set`` random taps equal to ``value`` (module docstring)."""
    k, n = taps_total, min(taps_set, taps_total)
    second = torch.full((k, k), value**2 * (n * (n - 1) / (k * (k - 1)) if k > 1 else 0.0), dtype=torch.float64)
    second.fill_diagonal_(value**2 * n / k)
    mean = torch.full((k,), value * n / k, dtype=torch.float64)
    return second - torch.outer(mean, mean)


def _apply(model: nn.Module, taps: int | None, norm: float | None, assign: str,
           generator: torch.Generator | None) -> list[dict]:
    layers = depthwise_layers_or_raise(model, "an impulse/box filter init")
    plans = []
    for layer in layers:  # every norm read (and checked) before anything is written
        kh, kw = layer.kernel
        total = kh * kw
        n = total if taps is None else min(int(taps), total)
        filter_norm = float(norm) if norm is not None else default_norm(layer)
        plans.append((layer, total, n, filter_norm))
    samples = [tap_filters(layer.channels, total, n, filter_norm / math.sqrt(n), assign=assign, generator=generator)
               for layer, total, n, filter_norm in plans]
    for (layer, *_), filters in zip(plans, samples):
        layer.write(filters)
    return [{"name": layer.name, "kernel": list(layer.kernel), "taps": n, "norm": filter_norm,
             "value": filter_norm / math.sqrt(n)} for layer, _, n, filter_norm in plans]


def depthwise_impulse_(model: nn.Module, *, norm: float | None = None, assign: str = "random",
                       generator: torch.Generator | None = None) -> int:
    """Make every depthwise filter of ``model`` a one-tap impulse of L2 norm ``norm`` (null: the replaced
    filters' RMS norm). ``assign``: ``random`` (a tap per channel from ``generator``) or ``cycle`` (tap
    ``c mod k^2``). Returns the number of layers written; :class:`InitError` (nothing written) when the model
    has no depthwise convs or an option is bad."""
    problems = _norm_problems(norm, "norm")
    if assign not in IMPULSE_ASSIGNS:
        problems.append(f"assign must be one of: {', '.join(IMPULSE_ASSIGNS)}, got {assign!r}")
    if problems:
        raise InitError("; ".join(problems))
    return len(_apply(model, 1, norm, assign, generator))


def depthwise_box_(model: nn.Module, *, taps: int | None = None, norm: float | None = None,
                   generator: torch.Generator | None = None) -> int:
    """Make every depthwise filter of ``model`` a box of ``taps`` equal taps (null: all ``k^2``, the same
    filter in every channel; fewer: a random subset per channel), L2 norm ``norm`` (null: the replaced
    filters' RMS norm). Returns the number of layers written; :class:`InitError` (nothing written) otherwise."""
    problems = _norm_problems(norm, "norm") + _taps_problems(taps, "taps")
    if problems:
        raise InitError("; ".join(problems))
    return len(_apply(model, taps, norm, "random", generator))


@dataclass
class _TapOptions(Option):
    touches_attention: ClassVar[bool] = False
    touches_depthwise: ClassVar[bool] = True
    norm: float | None = None

    def _taps(self) -> int | None:
        return 1

    def depthwise_targets(self, layers: list[DepthwiseConv], scales: list[float]) -> list[torch.Tensor]:
        """The covariance this init's filters have over channels (``scales``: the replaced per-tap RMS)."""
        out = []
        for layer, s in zip(layers, scales):
            total = layer.kernel[0] * layer.kernel[1]
            n = total if self._taps() is None else min(self._taps(), total)
            filter_norm = float(self.norm) if self.norm is not None else s * math.sqrt(total)
            out.append(tap_covariance(total, n, filter_norm / math.sqrt(n)))
        return out


@dataclass
class DwImpulseOptions(_TapOptions):
    """``init=dw_impulse``: every depthwise filter a one-tap impulse (Zheng et al.'s random impulse filters).
    ``assign``: random (a tap per channel, their code) | cycle (tap c mod k^2); ``norm``: each filter's L2
    norm, null = the replaced (default) filters' RMS norm (1/sqrt(3) for PyTorch's default; their code:
    1/sqrt(k)). Combine with model.freeze_depthwise=true for their frozen ("not trainable") variant."""

    assign: str = "random"

    def problems(self, group: str) -> list[str]:
        out = _norm_problems(self.norm, f"{group}.norm")
        if self.assign not in IMPULSE_ASSIGNS:
            out.append(f"{group}.assign={self.assign!r} is not one of: {', '.join(IMPULSE_ASSIGNS)}")
        return out


@dataclass
class DwBoxOptions(_TapOptions):
    """``init=dw_box``: every depthwise filter a box: ``taps`` equal taps (null = all k^2, the average filter
    shape; n = a random subset of n taps per channel, their box<n>), L2 norm ``norm`` (null = the replaced
    filters' RMS norm; 1/k makes the taps sum to 1). Combine with model.freeze_depthwise=true to freeze."""

    taps: int | None = None

    def _taps(self) -> int | None:
        return self.taps

    def problems(self, group: str) -> list[str]:
        return _norm_problems(self.norm, f"{group}.norm") + _taps_problems(self.taps, f"{group}.taps")


@INITS.register("dw_impulse", DwImpulseOptions, help="depthwise filters: one-tap impulses (random tap per channel)")
def _dw_impulse(model: nn.Module, options: DwImpulseOptions, generator: torch.Generator | None) -> dict:
    problems = options.problems("init")
    if problems:
        raise InitError("; ".join(problems))
    layers = _apply(model, 1, options.norm, options.assign, generator)
    return {"init": options.name, "layers": len(layers), "assign": options.assign, "norm": options.norm,
            "depthwise": layers}


@INITS.register("dw_box", DwBoxOptions, help="depthwise filters: box filters (all taps, or n random taps, equal)")
def _dw_box(model: nn.Module, options: DwBoxOptions, generator: torch.Generator | None) -> dict:
    problems = options.problems("init")
    if problems:
        raise InitError("; ".join(problems))
    layers = _apply(model, options.taps, options.norm, "random", generator)
    return {"init": options.name, "layers": len(layers), "taps": options.taps, "norm": options.norm,
            "depthwise": layers}

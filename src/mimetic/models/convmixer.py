"""ConvMixer for CIFAR (Trockman & Kolter, "Patches Are All You Need?"), built on timm's own class.

Registered two ways, like the ViTs:

* ``model=convmixer_256_8`` (width 256, depth 8, kernel 5, patch 2: the authors' CIFAR-10
  reference model), ``model=convmixer_256_8_k9p1`` (kernel 9, patch 1), ``model=convmixer_micro``
  (width 64, depth 4, kernel 5, patch 4: the CPU proxy); every size is a config key;
* with timm's ``register_model``: ``timm.create_model("mimetic_convmixer_256_8_k5_p2", num_classes=10)``.

Default init: timm's ConvMixer sets none of its own, so every conv keeps PyTorch's default
(Kaiming-uniform with a=sqrt(5): the depthwise taps are U(-1/k, 1/k), per-tap variance
1/(3 k^2)), BatchNorm weight 1 / bias 0, and the head PyTorch's default Linear init.

``model.freeze_depthwise=true`` keeps the depthwise filters (``blocks.*.0.fn.0.weight``,
not their biases) at their initial values through training and resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from timm.models import register_model
from timm.models.convmixer import ConvMixer

from mimetic.models.base import MODELS, DataSpec, ModelOption, timm_entry

CONVMIXER_DEPTHWISE = "blocks.*.0.fn.0.weight"


@dataclass
class ConvMixerOption(ModelOption):
    """ConvMixer-``dim``/``depth`` with ``kernel_size`` depthwise filters and ``patch_size`` patches."""

    channels_last: ClassVar[bool] = True

    dim: int = 256
    depth: int = 8
    kernel_size: int = 5
    patch_size: int = 2
    img_size: int = 32
    drop_rate: float = 0.0
    freeze_depthwise: bool = False  # keep the depthwise filters at their init (a switch, not an init)

    @property
    def input_size(self) -> int:
        return self.img_size

    def freeze_patterns(self) -> list[str]:
        return list(self.freeze) + ([CONVMIXER_DEPTHWISE] if self.freeze_depthwise else [])

    def problems(self, group: str) -> list[str]:
        g, out = group, []
        for key in ("dim", "depth", "kernel_size", "patch_size", "img_size"):
            if getattr(self, key) <= 0:
                out.append(f"{g}.{key} must be > 0, got {getattr(self, key)}")
        if self.dim == 1:
            out.append(f"{g}.dim must be > 1 (a width-1 conv is not depthwise)")
        if self.img_size > 0 and self.patch_size > 0 and self.img_size % self.patch_size:
            out.append(f"{g}.patch_size={self.patch_size} does not divide {g}.img_size={self.img_size}")
        if not 0 <= self.drop_rate < 1:
            out.append(f"{g}.drop_rate must be in [0, 1), got {self.drop_rate}")
        return out


@dataclass
class ConvMixer256K9P1(ConvMixerOption):
    kernel_size: int = 9
    patch_size: int = 1


@dataclass
class ConvMixerMicro(ConvMixerOption):
    """CPU proxy: 8x8 feature maps of width 64, four blocks (~20 s per CIFAR-slice epoch on 2 cores)."""

    dim: int = 64
    depth: int = 4
    patch_size: int = 4


def build_convmixer(cfg: ConvMixerOption, spec: DataSpec, **timm_kwargs: Any) -> ConvMixer:
    problems = cfg.problems("model")
    if problems:
        raise ValueError("; ".join(problems))
    return ConvMixer(dim=cfg.dim, depth=cfg.depth, kernel_size=cfg.kernel_size, patch_size=cfg.patch_size,
                     in_chans=spec.in_chans, num_classes=spec.num_classes, drop_rate=cfg.drop_rate, **timm_kwargs)


MODELS.add("convmixer_256_8", ConvMixerOption, build_convmixer,
           help="ConvMixer-256/8, kernel 5, patch 2: the authors' CIFAR-10 model")
MODELS.add("convmixer_256_8_k9p1", ConvMixer256K9P1, build_convmixer, help="ConvMixer-256/8, kernel 9, patch 1")
MODELS.add("convmixer_micro", ConvMixerMicro, build_convmixer,
           help="CPU-sized ConvMixer (width 64, depth 4, kernel 5, patch 4)")


def _timm_entry(option: ConvMixerOption, pretrained: bool, kwargs: dict) -> ConvMixer:
    return timm_entry(option, build_convmixer, pretrained, kwargs)


@register_model
def mimetic_convmixer_256_8_k5_p2(pretrained: bool = False, **kwargs: Any) -> ConvMixer:
    """The authors' CIFAR-10 ConvMixer-256/8 (kernel 5, patch 2)."""
    return _timm_entry(ConvMixerOption(name="convmixer_256_8"), pretrained, kwargs)


@register_model
def mimetic_convmixer_256_8_k9_p1(pretrained: bool = False, **kwargs: Any) -> ConvMixer:
    """ConvMixer-256/8 with kernel 9 and patch 1."""
    return _timm_entry(ConvMixer256K9P1(name="convmixer_256_8_k9p1"), pretrained, kwargs)


@register_model
def mimetic_convmixer_micro_k5_p4(pretrained: bool = False, **kwargs: Any) -> ConvMixer:
    """The CPU proxy ConvMixer (width 64, depth 4, kernel 5, patch 4)."""
    return _timm_entry(ConvMixerMicro(name="convmixer_micro"), pretrained, kwargs)

"""ConvNeXt for 32x32 inputs, built on timm's own ``ConvNeXt`` class.

timm's ImageNet ConvNeXt (patch-4 stem, three stride-2 downsamplings) would leave a 1x1 last
stage on 32x32 images. Here the stem patch is 1 (``convnext_cifar``: stages at 32, 16, 8, 4 px)
for both variants; the downsampling layers are timm's own. (A patch-2 stem would not help: timm
then downsamples in the first stage too, giving 8, 4, 2, 1 px.)

Default init: timm's ``_init_weights`` (trunc_normal std 0.02 for every conv and linear,
biases 0, head scaled by ``head_init_scale``=1), layer scale 1e-6: the depthwise taps have
per-tap std 0.02. ``model.freeze_depthwise=true`` freezes ``stages.*.blocks.*.conv_dw.weight``.

Also ``timm.create_model("mimetic_convnext_cifar_p1", num_classes=10)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from timm.models import register_model
from timm.models.convnext import ConvNeXt

from mimetic.models.base import MODELS, DataSpec, ModelOption, timm_entry

CONVNEXT_DEPTHWISE = "stages.*.blocks.*.conv_dw.weight"


@dataclass
class ConvNeXtCifar(ModelOption):
    """A four-stage ConvNeXt; ``depths``/``dims`` per stage, ``patch_size`` of the stem."""

    channels_last: ClassVar[bool] = True

    depths: list[int] = field(default_factory=lambda: [2, 2, 6, 2])
    dims: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    kernel_size: int = 7
    patch_size: int = 1
    img_size: int = 32
    drop_path: float = 0.1
    ls_init_value: float = 1e-6
    freeze_depthwise: bool = False

    @property
    def input_size(self) -> int:
        return self.img_size

    def freeze_patterns(self) -> list[str]:
        return list(self.freeze) + ([CONVNEXT_DEPTHWISE] if self.freeze_depthwise else [])

    def feature_sizes(self) -> list[int]:
        """Side of each stage's feature map, by timm's rule (a stage downsamples 2x when it is not the
        first, or when the stride so far is exactly 2: a patch-2 stem makes the first stage downsample too)."""
        side, stride, sizes = self.img_size // self.patch_size, self.patch_size, []
        for i in range(len(self.depths)):
            step = 2 if stride == 2 or i > 0 else 1
            side, stride = side // step, stride * step
            sizes.append(side)
        return sizes

    def problems(self, group: str) -> list[str]:
        g, out = group, []
        if not self.depths or len(self.depths) != len(self.dims):
            out.append(f"{g}.depths and {g}.dims need one entry per stage (got {self.depths} and {self.dims})")
        elif min(self.depths) <= 0 or min(self.dims) <= 1:
            out.append(f"{g}.depths must be > 0 and {g}.dims > 1")
        if self.kernel_size <= 0 or self.patch_size <= 0 or self.img_size <= 0:
            out.append(f"{g}.kernel_size, {g}.patch_size and {g}.img_size must be > 0")
        elif self.depths and min(self.feature_sizes()) < 1:
            out.append(f"{g}: {len(self.depths)} stages after a patch-{self.patch_size} stem leave no pixels of a "
                       f"{self.img_size}px image (feature sizes {self.feature_sizes()}); lower {g}.patch_size")
        if not 0 <= self.drop_path < 1:
            out.append(f"{g}.drop_path must be in [0, 1), got {self.drop_path}")
        return out


@dataclass
class ConvNeXtMicro(ConvNeXtCifar):
    depths: list[int] = field(default_factory=lambda: [1, 1, 2, 1])
    dims: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    drop_path: float = 0.0


def build_convnext(cfg: ConvNeXtCifar, spec: DataSpec, **timm_kwargs: Any) -> ConvNeXt:
    problems = cfg.problems("model")
    if problems:
        raise ValueError("; ".join(problems))
    return ConvNeXt(in_chans=spec.in_chans, num_classes=spec.num_classes, depths=tuple(cfg.depths),
                    dims=tuple(cfg.dims), kernel_sizes=cfg.kernel_size, patch_size=cfg.patch_size,
                    drop_path_rate=cfg.drop_path, ls_init_value=cfg.ls_init_value, **timm_kwargs)


MODELS.add("convnext_cifar", ConvNeXtCifar, build_convnext,
           help="ConvNeXt for 32px (depths 2-2-6-2, dims 64-512, kernel 7, patch-1 stem: 32/16/8/4 px stages)")
MODELS.add("convnext_micro", ConvNeXtMicro, build_convnext,
           help="CPU-sized ConvNeXt (depths 1-1-2-1, dims 32-256, patch-1 stem: 32/16/8/4 px stages)")


def _timm_entry(option: ConvNeXtCifar, pretrained: bool, kwargs: dict) -> ConvNeXt:
    return timm_entry(option, build_convnext, pretrained, kwargs)


@register_model
def mimetic_convnext_cifar_p1(pretrained: bool = False, **kwargs: Any) -> ConvNeXt:
    """ConvNeXt for 32px inputs (depths 2-2-6-2, dims 64-128-256-512, kernel 7, patch-1 stem)."""
    return _timm_entry(ConvNeXtCifar(name="convnext_cifar"), pretrained, kwargs)


@register_model
def mimetic_convnext_micro_p1(pretrained: bool = False, **kwargs: Any) -> ConvNeXt:
    """CPU-sized ConvNeXt (depths 1-1-2-1, dims 32-256, patch-1 stem)."""
    return _timm_entry(ConvNeXtMicro(name="convnext_micro"), pretrained, kwargs)

"""Any timm architecture: ``model=timm model.arch=convmixer_768_32``, or a model class with its
arguments: ``model=timm model.arch=timm.models.convmixer.ConvMixer +model.kwargs.dim=64 +model.kwargs.depth=4``.

A registered timm name is built by ``timm.create_model`` (``kwargs`` go to it, and cannot
change what the name fixes, e.g. a ConvMixer-768/32's width); a dotted class path is
imported and called with ``kwargs`` plus ``num_classes`` and ``in_chans``, so a CPU-sized
variant of any family is one command away. Either way the model keeps its own (timm's)
initialisation and is never loaded with pretrained weights (those need the network; the
attention-transfer reference is ``init=pretrained_attention``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import timm
from torch import nn

from mimetic.errors import ConfigError
from mimetic.models.base import MODELS, DataSpec, ModelOption


@dataclass
class TimmModel(ModelOption):
    arch: str = "convmixer_768_32"  # any name from timm.list_models()
    img_size: int = 32  # the data is resized to this; fully convolutional archs take any size
    kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the architecture's constructor

    @property
    def input_size(self) -> int:
        return self.img_size

    def problems(self, group: str) -> list[str]:
        out = []
        if "." in self.arch:
            try:
                _import(self.arch)
            except (ImportError, AttributeError, ValueError) as err:
                out.append(f"{group}.arch={self.arch!r} cannot be imported ({err})")
        elif self.arch not in timm.list_models():
            close = timm.list_models(f"*{self.arch.split('_')[0]}*")[:8]
            out.append(f"{group}.arch={self.arch!r} is not a timm model"
                       + (f" (similar: {', '.join(close)})" if close else "; see timm.list_models()"))
        if self.img_size <= 0:
            out.append(f"{group}.img_size must be > 0, got {self.img_size}")
        return out


@MODELS.register("timm", TimmModel, help="any timm architecture by name (model.arch), timm's own init")
def build_timm(cfg: TimmModel, spec: DataSpec) -> nn.Module:
    try:
        if "." in cfg.arch:
            return _import(cfg.arch)(num_classes=spec.num_classes, in_chans=spec.in_chans, **cfg.kwargs)
        return timm.create_model(cfg.arch, pretrained=False, num_classes=spec.num_classes, in_chans=spec.in_chans,
                                 **cfg.kwargs)
    except TypeError as err:
        raise ConfigError(f"model.kwargs do not fit timm's {cfg.arch}: {err}") from None


def _import(path: str) -> Any:
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ValueError("expected a dotted path such as timm.models.convmixer.ConvMixer")
    return getattr(importlib.import_module(module_name), attr)

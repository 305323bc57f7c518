"""What every model option shares: the registry, the data spec a builder receives, freezing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar

import torch

from mimetic.registry import Option, Registry

MODELS = Registry("model")


@dataclass
class ModelOption(Option):
    """Keys every model accepts.

    ``freeze``: glob patterns over parameter names (``fnmatch``) whose tensors are kept
    at their initial values: excluded from the optimizer, on a fresh start and on resume.
    """

    freeze: list[str] = field(default_factory=list)
    # Conv nets set this: their weights (and so the conv outputs) use the NHWC layout on every device:
    # the fast path for bf16 convolutions on tensor cores, and on CPU (oneDNN) 1.1-2.4x faster steps
    # (ConvMixer 9x9: 71 vs 30 images/s on one core). Not a config key: the function computed is the
    # same (tests/test_device_layout.py); only float rounding differs from the NCHW layout.
    channels_last: ClassVar[bool] = False

    def memory_format(self, device: torch.device) -> torch.memory_format:
        """The layout the model's weights get on ``device``."""
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def freeze_patterns(self) -> list[str]:
        """Every glob to freeze: ``freeze`` plus what the schema's own switches add (e.g. ``freeze_depthwise``)."""
        return list(self.freeze)

    @property
    def input_size(self) -> int | None:
        """Image side the data should be resized to (None: the model takes any size / no images)."""
        return None


@dataclass(frozen=True)
class DataSpec:
    """What the data tells the model builder: no builder needs to know the dataset."""

    task: str  # "classification" | "language_modeling" | ...
    num_classes: int | None = None
    in_chans: int = 3
    image_size: int | None = None
    vocab_size: int | None = None


def timm_entry(option: ModelOption, builder: Callable[..., Any], pretrained: bool, kwargs: dict) -> Any:
    """What each of the project's timm ``register_model`` functions does.

    Refuses pretrained weights (there are none), lets keyword arguments override the
    option's own fields (``depth=2``), and passes the rest to the builder.
    """
    if pretrained:
        raise ValueError(f"mimetic's {option.name} has no pretrained weights; train one with train.py")
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "pretrained_strict", "cache_dir"):
        kwargs.pop(key, None)  # timm's create_model passes these to every entry point
    ours = {f.name for f in fields(option)}
    option = replace(option, **{k: kwargs.pop(k) for k in list(kwargs) if k in ours})
    spec = DataSpec("classification", num_classes=kwargs.pop("num_classes", 1000), in_chans=kwargs.pop("in_chans", 3))
    return builder(option, spec, **kwargs)

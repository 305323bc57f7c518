"""What every model option shares: the registry, the data spec a builder receives, freezing."""

from __future__ import annotations

from dataclasses import dataclass, field

from mimetic.registry import Option, Registry

MODELS = Registry("model")


@dataclass
class ModelOption(Option):
    """Keys every model accepts.

    ``freeze``: glob patterns over parameter names (``fnmatch``) whose tensors are kept
    at their initial values: excluded from the optimizer, on a fresh start and on resume.
    """

    freeze: list[str] = field(default_factory=list)

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

"""The architecture behind a trained source file, from whoever knows where the file came from.

A state dict holds shapes, not structure: a (C, 1, k, k) weight may be a depthwise conv or a dense conv on a
1-channel input, and a (3d, d) ``qkv`` weight fits any head count that divides d. The init cannot tell where a
file came from; the code that wrote it can (a run directory of this project records its model in its config).
So that code registers a *source reader*:

    from mimetic.init import SourceModel, register_source_reader

    @register_source_reader
    def my_runs(checkpoint: Path, state: dict) -> SourceModel | None:
        ...  # None: not one of mine

Inits that read a trained model (``dw_covariance_transfer``, ``pretrained_attention``) ask
:func:`source_model`; when no reader knows the file (or none is registered: the library on its own), they
fall back to what the file itself holds. The training harness registers the reader of its run directories
(``mimetic.train.source_run.run_source_model``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class SourceModel:
    """The architecture a checkpoint's state belongs to (e.g. rebuilt on the meta device), and where that is
    recorded, for messages (e.g. ``"model of its runs/x/config.yaml"``)."""

    model: nn.Module
    where: str


SourceReader = Callable[[Path, dict[str, torch.Tensor]], "SourceModel | None"]
_READERS: list[SourceReader] = []


def register_source_reader(reader: SourceReader) -> SourceReader:
    """Ask ``reader(checkpoint_file, state)`` for the architecture of every source file (registering the same
    reader again changes nothing). Returns the reader, so this works as a decorator."""
    if reader not in _READERS:
        _READERS.append(reader)
    return reader


def source_model(checkpoint: str | Path, state: dict[str, torch.Tensor]) -> SourceModel | None:
    """The architecture of the checkpoint file ``checkpoint`` (whose model state is ``state``), from the first
    registered reader that knows it; None when none does. A reader's :class:`~mimetic.init.InitError` (a file
    that is its but does not fit what it records) goes to the caller."""
    path = Path(str(checkpoint)).expanduser()
    for reader in _READERS:
        found = reader(path, state)
        if found is not None:
            return found
    return None

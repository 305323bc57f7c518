"""Learned depthwise covariances on disk: the covariance file, and the filters of a trained model's state.

``dw_covariance_transfer`` samples from the empirical covariances of a trained model's depthwise filters. They come
from a covariance file (``{"format": "mimetic-dw-covariance/1", "source": ..., "layers": [...]}``, written by
:func:`save_covariances`, e.g. through ``scripts/prepare_data.py covariance``) or straight from a state dict: a bare
one, or the ``"model"`` entry of a checkpoint. Every file is read with ``torch.load(weights_only=True)``: opening it
can never run code.

Which tensors of a state dict are depthwise filters is a question of structure, which a state dict does not hold:
:func:`depthwise_weights_in_state` takes the answer (the weight names of the source model's depthwise convs) when
the caller knows it, and otherwise reads it off the shapes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from mimetic.init.base import InitError
from mimetic.init.covariance import empirical_covariance

COVARIANCE_FORMAT = "mimetic-dw-covariance/1"
#: The files a run directory of this project may hold, in the order a directory is searched.
RUN_FILES = ("dw_covariance.pt", "checkpoint.pt")


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
                               names: set[str] | None = None) -> list[tuple[str, torch.Tensor]]:
    """Depthwise filters in a state dict, in its (module) order.

    ``names``: the weight keys of the source model's depthwise convs, when its architecture is known (e.g.
    ``{conv.weight_name for conv in find_depthwise_convs(skeleton)}``): exactly those.

    Without it, from the shapes alone: ``*.weight`` of shape (C, 1, kh, kw), C > 1, kh*kw > 1, the shape
    a depthwise Conv2d has; but a dense conv on a 1-channel input (a grayscale stem, a ViT's patch
    embedding) has that shape too. What tells them apart is the input: a depthwise conv filters C
    channels that an earlier layer produced, while a 1-input-channel conv is fed by the image. So a
    candidate counts only if a tensor of an earlier module (in the state dict's order, which
    ``state_dict()`` and so every torch checkpoint keeps as module order) has C outputs (rows).
    """
    if names is not None:
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
                           names: set[str] | None = None) -> list[LayerCovariance]:
    """Per depthwise layer of a state dict, the empirical covariance of its filters (channels = samples).

    ``source`` names the state in messages; ``names``: see :func:`depthwise_weights_in_state`."""
    found = depthwise_weights_in_state(state, names)
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


def save_covariances(layers: list[LayerCovariance], path: str | Path, source: str = "") -> Path:
    """Write ``layers`` as a covariance file (its parent folders made); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": COVARIANCE_FORMAT, "source": source, "layers": [c.to_dict() for c in layers]}, path)
    return path


class SourceFile(NamedTuple):
    """What a source file held: a covariance file's layers, or a model state (from a checkpoint, or bare)."""

    path: Path
    covariances: list[LayerCovariance] | None
    state: dict[str, torch.Tensor] | None
    checkpoint: bool  # the state is a checkpoint's "model": the run that wrote it may know its structure


def read_covariance_source(path: str | Path) -> SourceFile:
    """What the file ``path`` stands for holds. A directory stands for the first of :data:`RUN_FILES` it holds.
    Raises :class:`InitError` for a missing, unreadable or unrelated file."""
    p = Path(str(path)).expanduser()
    if p.is_dir():
        for candidate in (p / name for name in RUN_FILES):
            if candidate.is_file():
                p = candidate
                break
        else:
            raise InitError(f"{path} holds neither {' nor '.join(RUN_FILES)}; run "
                            f"scripts/prepare_data.py covariance {path} or point at a finished run")
    if not p.is_file():
        raise InitError(f"{path}: no such file; write one with scripts/prepare_data.py covariance <run dir> --out FILE")
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file
        raise InitError(f"{p} is not a readable covariance file or checkpoint ({type(err).__name__})") from None
    if isinstance(blob, dict) and blob.get("format") == COVARIANCE_FORMAT:
        layers = [LayerCovariance(d["name"], tuple(d["kernel"]), int(d["channels"]), d["cov"].to(torch.float64),
                                  d["mean"].to(torch.float64)) for d in blob["layers"]]
        if not layers:
            raise InitError(f"{p} holds no depthwise layers")
        return SourceFile(p, layers, None, False)
    if isinstance(blob, dict) and isinstance(blob.get("model"), dict):
        return SourceFile(p, None, blob["model"], True)
    if isinstance(blob, dict) and blob and all(isinstance(v, torch.Tensor) for v in blob.values()):
        return SourceFile(p, None, blob, False)
    raise InitError(f"{p} is neither a covariance file ({COVARIANCE_FORMAT}) nor a checkpoint with a model state")

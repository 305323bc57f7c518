"""The architecture behind a source checkpoint, when the checkpoint belongs to a run of this project.

A state dict holds shapes, not structure: a (C, 1, k, k) weight may be a depthwise conv or a dense
conv on a 1-channel input, and a (3d, d) ``qkv`` weight fits any head count that divides d. A run
directory records what the shapes cannot: its ``config.yaml`` names the model. :func:`source_model`
rebuilds that model on the meta device (no storage, no init cost) with the registered builder the
run used, so callers read depthwise convs and attention heads off the real module structure.

Inits that read a trained model (``dw_covariance_transfer``, ``pretrained_attention``) use it; a
file that is not in a run directory gives None, and they fall back to what the file itself holds.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mimetic.init.base import InitError

CONFIG = "config.yaml"  # runtime/rundir.py: the run's resolved config, beside its checkpoint.pt


def run_dir_of(checkpoint: str | Path) -> Path | None:
    """The run directory a checkpoint file (or the run directory itself) belongs to, if it has a config."""
    path = Path(str(checkpoint)).expanduser()
    folder = path if path.is_dir() else path.parent
    return folder if (folder / CONFIG).is_file() else None


def _guess_spec(state: dict[str, torch.Tensor]):
    """What the builder needs besides the model config, read off the shapes (any values build the same
    structure, except the input channels, which decide the stem: taken from the first conv weight)."""
    from mimetic.models import DataSpec

    matrices = [v for k, v in state.items() if k.endswith("weight") and getattr(v, "dim", lambda: 0)() == 2]
    convs = [v for k, v in state.items() if k.endswith("weight") and getattr(v, "dim", lambda: 0)() == 4]
    outputs = int(matrices[-1].shape[0]) if matrices else 10
    return DataSpec("classification", num_classes=outputs, in_chans=int(convs[0].shape[1]) if convs else 3,
                    vocab_size=outputs)


def source_model(checkpoint: str | Path, state: dict[str, torch.Tensor]) -> nn.Module | None:
    """The model of the run ``checkpoint`` belongs to, on the meta device; None when it is no run's.

    Raises :class:`InitError` when the run's config names a model this code cannot build, or one
    whose parameters are not the checkpoint's (the structure would then say nothing about it).
    """
    folder = run_dir_of(checkpoint)
    if folder is None:
        return None
    from mimetic.models import MODELS, build_model
    from mimetic.runtime.rundir import RunDir

    raw = (RunDir(folder).read_config() or {}).get("model")
    if not isinstance(raw, dict) or "name" not in raw:
        return None
    try:
        options = MODELS.get(raw["name"]).schema(**raw)
        with torch.device("meta"):
            model = build_model(options, _guess_spec(state))
    except Exception as err:  # noqa: BLE001 - a builder raises many types for a config it cannot build
        raise InitError(f"{folder / CONFIG} names a model (model={raw.get('name')}) that cannot be rebuilt to read "
                        f"the checkpoint's structure ({type(err).__name__}: {err})") from None
    names = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_buffers()}
    missing = [key for key in state if key not in names]
    if missing:
        raise InitError(f"{checkpoint} does not match the model its run's {CONFIG} describes (e.g. it holds "
                        f"{missing[0]!r}, which that model has not); point at the run directory the checkpoint "
                        "came from")
    return model

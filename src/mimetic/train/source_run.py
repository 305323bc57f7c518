"""The architecture behind a checkpoint of this project's runs: the init's source reader for run directories.

A state dict holds shapes, not structure: a (C, 1, k, k) weight may be a depthwise conv or a dense conv on a
1-channel input, and a (3d, d) ``qkv`` weight fits any head count that divides d. A run directory records what
the shapes cannot: its ``config.yaml`` names the model. :func:`run_source_model` rebuilds that model on the meta
device (no storage, no init cost) with the registered builder the run used, so the inits that read a trained
model (``dw_covariance_transfer``, ``pretrained_attention``) read depthwise convs and attention heads off the real
module structure. The harness hands it to the init library once:

    from mimetic.init import register_source_reader
    register_source_reader(run_source_model)

A file that is not in a run directory gives None, and the inits fall back to what the file itself holds.
``train.step0`` registers the reader, so every run (and every analysis that rebuilds a run's model) has it.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mimetic.init import InitError, SourceModel
from mimetic.runtime.rundir import CONFIG, RunDir


def run_dir_of(checkpoint: str | Path) -> Path | None:
    """The run directory a checkpoint file (or the run directory itself) belongs to, if it has a config."""
    path = Path(str(checkpoint)).expanduser()
    folder = path if path.is_dir() else path.parent
    return folder if (folder / CONFIG).is_file() else None


def recorded_spec(config: dict, state: dict[str, torch.Tensor]):
    """The ``DataSpec`` a run's model was built for: recorded in its config (``_run.data_spec``).

    Runs written before the spec was recorded (code before 2026-12) only have their weights: for them the
    spec is read off the checkpoint's shapes (:func:`legacy_spec_from_state`), and loading the state
    strictly afterwards checks that reading.
    """
    from mimetic.models import DataSpec

    recorded = (config.get("_run") or {}).get("data_spec")
    return DataSpec(**recorded) if recorded else legacy_spec_from_state(state)


def legacy_spec_from_state(state: dict[str, torch.Tensor]):
    """A spec read off a checkpoint's shapes, for runs that did not record theirs.

    The output layer is the last 2-D weight (a classifier's head, a language model's ``lm_head``), so its
    rows are the number of classes or the vocabulary; the input channels are those of the first 4-D weight.
    """
    from mimetic.models import DataSpec

    matrices = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 2]
    convs = [v for k, v in state.items() if k.endswith("weight") and v.dim() == 4]
    outputs = matrices[-1].shape[0] if matrices else 10
    return DataSpec("classification", num_classes=outputs, in_chans=convs[0].shape[1] if convs else 3,
                    vocab_size=outputs)


def run_source_model(checkpoint: str | Path, state: dict[str, torch.Tensor]) -> SourceModel | None:
    """The model of the run ``checkpoint`` belongs to, on the meta device; None when it is no run's.

    Raises :class:`~mimetic.init.InitError` when the run's config names a model this code cannot build, or one
    whose parameters are not the checkpoint's (the structure would then say nothing about it).
    """
    folder = run_dir_of(checkpoint)
    if folder is None:
        return None
    from mimetic.models import MODELS, build_model

    config = RunDir(folder).read_config() or {}
    raw = config.get("model")
    if not isinstance(raw, dict) or "name" not in raw:
        return None
    try:
        options = MODELS.get(raw["name"]).schema(**raw)
        with torch.device("meta"):
            model = build_model(options, recorded_spec(config, state))
    except Exception as err:  # noqa: BLE001 - a builder raises many types for a config it cannot build
        raise InitError(f"{folder / CONFIG} names a model (model={raw.get('name')}) that cannot be rebuilt to read "
                        f"the checkpoint's structure ({type(err).__name__}: {err})") from None
    names = {name for name, _ in model.named_parameters()} | {name for name, _ in model.named_buffers()}
    missing = [key for key in state if key not in names]
    if missing:
        raise InitError(f"{checkpoint} does not match the model its run's {CONFIG} describes (e.g. it holds "
                        f"{missing[0]!r}, which that model has not); point at the run directory the checkpoint "
                        "came from")
    return SourceModel(model, f"model of its {folder / CONFIG}")

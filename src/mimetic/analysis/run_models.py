"""A run directory's model, rebuilt: at step 0 (exactly the weights it started from) or trained.

Figures about weights need the model itself, not only the metrics: its architecture comes from
the run's ``config.yaml`` (through the typed config, so it is built by the same registered
builder as in training), its trained weights from ``checkpoint.pt`` (``torch.load`` with
``weights_only=True``: opening it can never run code), and its step-0 weights from
``mimetic.train.step0.initial_model``, the function the run itself started from, so "mimetic at
step 0" is the very tensor the run trained from, not another draw.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mimetic.analysis import AnalysisError
from mimetic.runtime.rundir import RunDir


def run_config(run_dir: Path):
    """The run's typed ``TrainConfig`` from its ``config.yaml``."""
    from mimetic.train.config import load_config

    raw = RunDir(run_dir).read_config()
    if not raw:
        raise AnalysisError(f"{run_dir} has no config.yaml: point at a run directory written by train.py")
    raw = {k: v for k, v in raw.items() if k != "_run"}
    return load_config(raw)


def checkpoint_state(run_dir: Path) -> dict[str, torch.Tensor]:
    """The model weights of the run's latest checkpoint (a finished run's: its final weights)."""
    from mimetic.runtime.checkpoint import CHECKPOINT_NAME, load

    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise AnalysisError(f"{run_dir} has no {CHECKPOINT_NAME}: the run has not finished an epoch yet")
    return load(path)["model"]


def run_spec(run_dir: Path, state: dict[str, torch.Tensor] | None = None):
    """The ``DataSpec`` the run's model was built for (recorded in its config.yaml; read off the checkpoint's
    shapes only for runs written before it was recorded: ``train.source_run.recorded_spec``)."""
    from mimetic.train.source_run import recorded_spec

    config = RunDir(run_dir).read_config() or {}
    if (config.get("_run") or {}).get("data_spec"):
        return recorded_spec(config, {})
    return recorded_spec(config, checkpoint_state(run_dir) if state is None else state)


def fresh_model(run_dir: Path) -> nn.Module:
    """The run's architecture with its base (default-init) weights, before its init is applied."""
    from mimetic.train.step0 import base_model

    return base_model(run_config(run_dir), run_spec(run_dir)).eval()


def model_at_step0(run_dir: Path) -> nn.Module:
    """The run's model with the weights it started training from (default weights + its init)."""
    from mimetic.train.step0 import initial_model

    return initial_model(run_config(run_dir), run_spec(run_dir)).model.eval()


def trained_model(run_dir: Path, state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """The run's model with its checkpoint's weights (``state``: those weights, when already loaded)."""
    from mimetic.train.step0 import base_model

    state = checkpoint_state(run_dir) if state is None else state
    model = base_model(run_config(run_dir), run_spec(run_dir, state))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise AnalysisError(f"{run_dir}/checkpoint.pt does not fit the model its config.yaml builds: "
                            f"{str(err).splitlines()[0]}") from None
    return model.eval()


def pretrained_vit(path: Path, arch: str = "vit_tiny_patch16_224") -> nn.Module:
    """A timm ``arch`` whose attention weights are those of the checkpoint file ``path``.

    Only attention enters the QK/VO figures, so only attention is copied
    (``mimetic.init.pretrained_attention_``, which checks every shape before writing).
    """
    import timm

    import mimetic.models  # noqa: F401  (registers the project's ViTs with timm: they are valid archs too)
    from mimetic.init import pretrained_attention_

    if not Path(path).is_file():
        raise AnalysisError(f"pretrained checkpoint {path} not found (a timm ViT .pth or .safetensors file)")
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False)
    pretrained_attention_(model, path)
    return model.eval()


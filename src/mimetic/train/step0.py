"""The step-0 model: the paper's central invariant, written once for training and analysis alike.

Both arms of an experiment share every tensor the init does not overwrite: the architecture's
default weights come from their own seeded stream (``<seed>/model``), identical whatever the
init, and the init then draws from its own stream (``<seed>/init``). ``train.run`` trains from
exactly this model; ``analysis.run_models`` rebuilds it from a run directory ("mimetic at
step 0" is the very tensor the run trained from, not another draw).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from mimetic.init import apply_and_diagnose, apply_init, register_source_reader
from mimetic.models import DataSpec, build_model
from mimetic.train.config import TrainConfig
from mimetic.train.seeding import derive_seed, generator
from mimetic.train.source_run import run_source_model

# Inits that read a trained model (dw_covariance_transfer, pretrained_attention) learn a run directory's
# architecture from its config.yaml (which convs are depthwise, how many heads), not from weight shapes.
register_source_reader(run_source_model)


@dataclass
class InitialModel:
    """The model at step 0, what its init reported, and (when asked) the step-0 diagnostics."""

    model: nn.Module
    init_report: dict = field(default_factory=dict)
    diagnostics: dict | None = None


def base_model(cfg: TrainConfig, spec: DataSpec, seed: int | None = None) -> nn.Module:
    """The architecture with its default weights, from the run's seeded ``model`` stream.

    The global RNG is seeded here and goes on from there: a run's dropout masks continue this stream.
    """
    torch.manual_seed(derive_seed(cfg.seed if seed is None else seed, "model"))
    return build_model(cfg.model, spec)


def initial_model(cfg: TrainConfig, spec: DataSpec, seed: int | None = None, *,
                  diagnose: bool = False) -> InitialModel:
    """The model a run with ``cfg`` (and ``seed``, default ``cfg.seed``) starts training from.

    ``diagnose=True`` also measures the step-0 products through the layers' forward
    (``mimetic.init.diagnose_init``), as a run records them in ``init_diagnostics.json``.
    """
    seed = cfg.seed if seed is None else seed
    model = base_model(cfg, spec, seed)
    if not diagnose:
        return InitialModel(model, apply_init(model, cfg.init, generator(seed, "init")))
    diagnostics = apply_and_diagnose(model, cfg.init, generator(seed, "init"))  # scans the attention once
    return InitialModel(model, diagnostics["init"], diagnostics)

"""Choose an initialisation by name, as train.py's ``init`` config group does.

The names, their typed schemas and their functions come from :data:`INITS`; this module
adds ``default`` and turns any config-like object into validated options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn

from mimetic.errors import ConfigError
from mimetic.init.base import INITS, SCANNED, InitError
from mimetic.registry import Option


@dataclass
class DefaultOptions(Option):
    """``init=default``: the model's own (timm's) initialisation, untouched. No keys."""

    touches_attention: ClassVar[bool] = False


@INITS.register("default", DefaultOptions, help="the model's own initialisation, untouched")
def _default(model: nn.Module, options: DefaultOptions, generator: torch.Generator | None) -> dict:
    return {"init": options.name, "layers": 0}


def _field(cfg: Any, key: str, default: Any = None) -> Any:
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


def init_options(cfg: Any, group: str = "init") -> Option:
    """The validated options of the init ``cfg`` names.

    ``cfg`` is an init name, an :class:`~mimetic.registry.Option` of a registered init, or
    any mapping/object with ``name`` and keys of that init's schema (a dict, an OmegaConf
    node, a dataclass). Keys the schema does not have are ignored, so one mapping may carry
    the keys of several inits; validating the config's keys is the harness's job.
    Raises ``ConfigError`` for an unknown name and :class:`InitError` for impossible values.
    """
    if isinstance(cfg, str):
        cfg = {"name": cfg}
    name = _field(cfg, "name")
    if not name:
        raise ConfigError(f"{group}.name is missing; choose one of: {', '.join(INITS.names())}")
    entry = INITS.get(str(name))
    if isinstance(cfg, entry.schema):
        options = cfg
    else:
        missing = object()
        values = {}
        for f in fields(entry.schema):
            value = _field(cfg, f.name, missing)
            if f.name != "name" and value is not missing:
                values[f.name] = value
        options = entry.schema(name=str(name), **values)
    problems = options.problems(group)
    if problems:
        raise InitError("; ".join(problems))
    return options


def apply_init(model: nn.Module, init_cfg: Any, generator: torch.Generator | None = None) -> dict:
    """Apply the init named by ``init_cfg.name`` to ``model`` (in place); report what was done.

    ``init_cfg`` is anything :func:`init_options` takes, e.g. ``{"name": "mimetic",
    "alpha_qk": 0.5}``. Returns the init function's JSON-ready report (``{"init": name,
    "layers": n, ...}``). ``default`` leaves the model's own (timm) init untouched.
    """
    report, _ = run_init(model, init_options(init_cfg), generator)
    return report


def run_init(model: nn.Module, options: Option, generator: torch.Generator | None = None) -> tuple[dict, list | None]:
    """The registered init of validated ``options``: its JSON-ready report, and the attention layers it wrote
    (None when it handed back none; see :data:`mimetic.init.base.SCANNED`)."""
    report = INITS.get(options.name).fn(model, options, generator)
    return report, report.pop(SCANNED, None)

"""Composite inits ``<attention init>+<conv init>``: both halves of the method on one model.

``init=mimetic+dw_covariance`` (and ``mimetic+dw_covariance_transfer``) applies mimetic init to the attention
layers, then the covariance init to the depthwise convs, with the keys of both; any other pair of registered
names is one :func:`register_composite_init` call away.
"""

from __future__ import annotations

from dataclasses import make_dataclass

import torch
from torch import nn

from mimetic.init import attention, depthwise  # noqa: F401  (the inits the built-in composites pair)
from mimetic.init.base import INITS, SCANNED, InitError
from mimetic.registry import Option


def register_composite_init(attention_init: str, depthwise_init: str) -> str:
    """Register ``<attention_init>+<depthwise_init>``: the keys of both, attention first, then the filters.

    Returns the new name (registering a pair again changes nothing).
    """
    ea, ed = INITS.get(attention_init), INITS.get(depthwise_init)
    if not getattr(ea.schema, "touches_attention", False) or not getattr(ed.schema, "touches_depthwise", False):
        raise InitError(f"{attention_init}+{depthwise_init}: the first must be an attention init, the second a "
                        "depthwise init")
    name = f"{attention_init}+{depthwise_init}"
    if name in INITS:
        return name

    def problems(self, group: str) -> list[str]:
        return ea.schema.problems(self, group) + ed.schema.problems(self, group)

    schema = make_dataclass(
        f"Composite_{attention_init}_{depthwise_init}", [], bases=(ed.schema, ea.schema),
        namespace={"touches_attention": True, "touches_depthwise": True, "problems": problems,
                   "__doc__": f"``init={name}``: {attention_init} on attention, then {depthwise_init} on "
                              "depthwise convs."})

    def both(model: nn.Module, options: Option, generator: torch.Generator | None) -> dict:
        ra = ea.fn(model, options, generator)
        rd = ed.fn(model, options, generator)
        scanned = {SCANNED: ra.pop(SCANNED)} if SCANNED in ra else {}  # the attention half's layers, handed on
        return {"init": options.name, "layers": ra.get("layers", 0) + rd.get("layers", 0),
                "attention": ra, "depthwise": rd, **scanned}

    INITS.add(name, schema, both, help=f"{attention_init} on attention layers, then {depthwise_init} on depthwise "
                                       "convs")
    return name


register_composite_init("mimetic", "dw_covariance")
register_composite_init("mimetic", "dw_covariance_transfer")

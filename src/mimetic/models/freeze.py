"""Keep chosen tensors at their initial values: a step of its own, after init and on resume.

Freezing is not an init: it is applied to whatever weights the model holds (fresh or
restored from a checkpoint) *before* the optimizer is built, so frozen tensors are never
handed to the optimizer (no update, no weight decay) and stay bit-identical.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from torch import nn

from mimetic.errors import ConfigError


def freeze_(model: nn.Module, patterns: list[str]) -> list[str]:
    """Set ``requires_grad=False`` on every parameter whose name matches a glob in ``patterns``.

    Returns the frozen names. A pattern that matches nothing is a ``ConfigError`` (a typo
    would otherwise silently train what the user meant to freeze).
    """
    names = [name for name, _ in model.named_parameters()]
    frozen: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if fnmatchcase(n, pattern)]
        if not hits:
            example = ", ".join(names[:3])
            raise ConfigError(
                f"model.freeze pattern {pattern!r} matches no parameter (names look like: {example}, ...)"
            )
        frozen += [n for n in hits if n not in frozen]
    params = dict(model.named_parameters())
    for name in frozen:
        params[name].requires_grad_(False)
    return frozen

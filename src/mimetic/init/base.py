"""What every init shares: the registry of inits by name, and the error users can act on.

Each init registers its typed schema (a :class:`mimetic.registry.Option`) next to its
function, with the signature ``fn(model, options, generator) -> dict``:

    @INITS.register("my_init", MyInitOptions)
    def my_init(model, options, generator):
        ...
        return {"init": options.name, "layers": n}

The config group ``init=`` accepts exactly the registered names.

An init that found the model's attention layers may also return them under the key :data:`SCANNED`:
:func:`~mimetic.init.apply_init` takes them out of the report (which stays JSON-ready), and
:func:`~mimetic.init.apply_and_diagnose` measures those layers instead of scanning the model again.
"""

from __future__ import annotations

from mimetic.errors import MimeticError
from mimetic.registry import Registry

INITS = Registry("init")
#: Report key under which an init may hand back the attention layers it wrote (never part of a logged report).
SCANNED = "_attention_layers"


class InitError(MimeticError, ValueError):
    """An init cannot be applied as asked: a bad coefficient, a missing or unfitting checkpoint,
    a model without (supported) attention. The message names the module or key and the fix."""

"""Atomic checkpoints holding every piece of state a bit-exact resume needs.

The file loads with ``torch.load(weights_only=True)``: it holds only tensors, numbers,
strings, lists and dicts, so opening a checkpoint can never run code (a crafted pickle in
a run directory is refused, not executed). RNG states that Python and NumPy keep as
tuples/arrays are stored as tensors and plain numbers.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mimetic.errors import CheckpointError
from mimetic.runtime.rundir import CHECKPOINT, write_bytes_atomic

CHECKPOINT_NAME = CHECKPOINT
FORMAT_VERSION = 2


def rng_state() -> dict[str, Any]:
    version, keys, gauss = random.getstate()
    kind, np_keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": {"version": version, "keys": torch.tensor(keys, dtype=torch.int64), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(int(k) for k in py["keys"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
                         npy["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """Serialise, then write through a temporary file + fsync + rename.

    A crash (or ``kill -9``, or a second signal) at any moment leaves either the old or the
    new checkpoint, never a torn one; a full disk leaves the old one.
    """
    buffer = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buffer)
    write_bytes_atomic(Path(path), buffer.getvalue())


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_atomic`; ``CheckpointError`` if it is unreadable."""
    path = Path(path)
    fix = (
        f"Delete it to restart this run from scratch (rm {path}), or keep it and point "
        "hydra.run.dir at a new directory."
    )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a bad or unsafe file
        reason = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            reason = "it holds Python objects that would run code when loaded; it was not written by this code"
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({reason}). {fix}") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        found = state.get("format_version") if isinstance(state, dict) else None
        raise CheckpointError(
            f"{path} is not a checkpoint of this code version (format {found}, expected {FORMAT_VERSION}). {fix}"
        )
    return state

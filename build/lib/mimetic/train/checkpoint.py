"""Atomic checkpoints with every piece of state a bit-exact resume needs."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mimetic.errors import CheckpointError

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1


def rng_state() -> dict[str, Any]:
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(state: dict[str, Any], path: Path) -> None:
    """Write to a temporary file, fsync, then rename over ``path``.

    A crash (or ``kill -9``) at any moment leaves either the old or the new checkpoint,
    never a torn one.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save({"format_version": FORMAT_VERSION, **state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_atomic`; ``CheckpointError`` if it is unreadable."""
    path = Path(path)
    fix = (
        f"Delete it to restart this run from scratch (rm {path}), or keep it and point "
        "hydra.run.dir at a new directory."
    )
    try:
        # weights_only=False: the file holds RNG states (numpy/python tuples) that the
        # restricted unpickler rejects; it is our own file, written by save_atomic.
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        reason = f"{type(err).__name__}: {err}"
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({reason}). {fix}") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path} is not a checkpoint of this code (format {FORMAT_VERSION}). {fix}")
    return state

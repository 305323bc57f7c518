"""Independent random streams derived from one ``seed``.

The init noise, the base model weights and the data stream each get their own
generator, so default and mimetic runs with the same seed share every tensor mimetic
init does not overwrite and see the very same batches.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(seed: int, stream: str, *extra: int) -> int:
    text = "/".join([str(seed), stream, *map(str, extra)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, stream: str, *extra: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derive_seed(seed, stream, *extra))

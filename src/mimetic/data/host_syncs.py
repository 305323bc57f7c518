"""Which aten ops make the host wait for an accelerator: the check that the batched augmentation is sync-free.

A host sync cannot be observed on the CPU, so :class:`HostSyncRecorder` records every aten op dispatched
inside it and keeps those that would wait for an accelerator or copy host data to it: reading a value back
(``.item()``, ``bool(t)``, ``mask.any()`` in an ``if``), data-dependent shapes (``x[mask]``, ``nonzero``), and
tensors built from Python data (``torch.tensor(list)``). Used by ``tests/test_augment_sync.py`` and
``scripts/gpu_check.py``; on CUDA, ``torch.cuda.set_sync_debug_mode("error")`` is the device's own check.
"""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode

#: aten ops that make the host wait for an accelerator, or move host data onto it.
SYNCING = {"_local_scalar_dense", "nonzero", "nonzero_static", "masked_select", "is_nonzero", "item", "equal",
           "lift_fresh", "lift_fresh_copy", "_assert_async", "unique", "_unique2", "bincount", "repeat_interleave"}


class HostSyncRecorder(TorchDispatchMode):
    """``with HostSyncRecorder() as rec: ...``; then ``rec.bad`` lists the syncing ops dispatched, in order."""

    def __init__(self):
        super().__init__()
        self.bad: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        if name in SYNCING:
            self.bad.append(func.__name__)
        if name in ("index", "index_put", "index_put_"):  # a boolean index has a data-dependent size
            indices = args[1] if len(args) > 1 else []
            if any(i is not None and i.dtype == torch.bool for i in indices):
                self.bad.append(f"{func.__name__} with a boolean mask")
        return func(*args, **(kwargs or {}))

"""BatchNorm over the global batch when a run spans several processes (so N ranks train one model).

Under DDP each rank only sees its shard, so a plain ``BatchNorm`` normalises with the shard's
statistics and updates its running statistics from them: two processes would train another
model than one process, and each rank would evaluate with its own running statistics. Converting
every BatchNorm before wrapping the model makes the statistics (and their gradients) those of the
global batch, as one process computes them:

* on CUDA, PyTorch's own :class:`torch.nn.SyncBatchNorm` (fused kernels; CUDA-only);
* elsewhere (CPU ranks over gloo, where ``SyncBatchNorm`` refuses to run), :class:`GlobalBatchNorm`:
  the same statistics from two autograd-aware all-reduces (sums, then centred squares).

Both keep the module's parameters and buffers (same ``state_dict`` keys), so checkpoints and the
analysis, which rebuild the plain model, read them unchanged.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the batch over every rank (any backend)."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {input.dim()}-D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.training and distributed):
            return super().forward(x)
        self._check_input_dim(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor(float(x.numel() // x.shape[1]), dtype=torch.float64, device=x.device)
        dist.all_reduce(count)  # the global number of values per channel (no gradient)
        n = count.to(x.dtype)
        mean = differentiable_all_reduce(x.sum(dims)) / n
        centred = x - mean.view(shape)
        var = differentiable_all_reduce(centred.square().sum(dims)) / n  # biased, as BatchNorm normalises
        y = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked)) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach(), momentum)
                unbiased = var.detach() * (n / (n - 1)) if count.item() > 1 else var.detach()
                self.running_var.lerp_(unbiased, momentum)
        return y


def _convert(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats, device=None, dtype=None)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias  # the same Parameter objects
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.training = module.training
    for name, child in module.named_children():
        out.add_module(name, _convert(child))
    return out


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def synchronise_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm computing global-batch statistics under DDP (call before wrapping)."""
    if not has_batchnorm(model):
        return model
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return _convert(model)

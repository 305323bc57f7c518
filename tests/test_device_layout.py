"""Speed paths, checked where a CPU can: channels_last for conv nets, fused AdamW (CUDA only)."""

from __future__ import annotations

import pytest
import torch

from mimetic.models import MODELS, build_model
from mimetic.models.base import DataSpec
from mimetic.train.optim import AdamW, build_adamw, on_cuda

SPEC = DataSpec("classification", num_classes=10, image_size=32)
CUDA = torch.device("cuda")  # a device object needs no GPU


@pytest.mark.parametrize("name", ["convmixer_micro", "convnext_micro"])
def test_conv_nets_take_channels_last_on_every_device(name):
    option = MODELS.default_options(name)
    assert option.memory_format(CUDA) == torch.channels_last
    assert option.memory_format(torch.device("cpu")) == torch.channels_last


@pytest.mark.parametrize("name", ["vit_micro", "gpt_micro", "timm"])
def test_other_models_keep_the_default_layout(name):
    assert MODELS.default_options(name).memory_format(CUDA) == torch.contiguous_format
    assert MODELS.default_options(name).memory_format(torch.device("cpu")) == torch.contiguous_format


@pytest.mark.parametrize("name", ["convmixer_micro", "convnext_micro"])
def test_a_channels_last_conv_net_computes_the_same_function(name):
    """The layout is a storage choice: same outputs and gradients (checked on the CPU's NHWC kernels)."""
    torch.manual_seed(0)
    a = build_model(MODELS.default_options(name), SPEC)
    b = build_model(MODELS.default_options(name), SPEC)
    b.load_state_dict(a.state_dict())
    b.to(memory_format=torch.channels_last)
    assert any(p.dim() == 4 and p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
               for p in b.parameters())
    x = torch.randn(4, 3, 32, 32)
    ya, yb = a(x), b(x)
    torch.testing.assert_close(ya, yb, rtol=1e-4, atol=1e-5)
    ya.sum().backward()
    yb.sum().backward()
    for (name_a, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=1e-3, atol=1e-5, msg=name_a)


def test_adamw_is_fused_only_when_every_trainable_tensor_is_on_cuda():
    model = build_model(MODELS.default_options("vit_micro"), SPEC)
    assert not on_cuda(model)
    optimizer = build_adamw(model, AdamW())
    assert not optimizer.defaults.get("fused")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_adamw_is_fused_on_cuda():
    model = build_model(MODELS.default_options("vit_micro"), SPEC).cuda()
    assert build_adamw(model, AdamW()).defaults["fused"] is True

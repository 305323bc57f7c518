"""ConvMixer and ConvNeXt for 32x32 inputs: registered with timm and the project, sizes, default inits, freezing."""

import math

import pytest
import timm
import torch

import mimetic.models  # noqa: F401  (registers the models with timm)
from mimetic.init import find_depthwise_convs
from mimetic.models import MODELS, DataSpec, build_model, freeze_

SPEC = DataSpec("classification", num_classes=10)


@pytest.mark.parametrize("name,depth,kernel,patch", [("convmixer_256_8", 8, 5, 2), ("convmixer_256_8_k9p1", 8, 9, 1),
                                                     ("convmixer_micro", 4, 5, 4)])
def test_convmixer_variants(name, depth, kernel, patch):
    option = MODELS.default_options(name)
    assert (option.depth, option.kernel_size, option.patch_size) == (depth, kernel, patch)
    model = build_model(option, SPEC)
    layers = find_depthwise_convs(model)
    assert len(layers) == depth and all(layer.kernel == (kernel, kernel) for layer in layers)
    assert model.stem[0].stride == (patch, patch)
    # default init: PyTorch's Kaiming-uniform, U(-1/k, 1/k) per tap (timm's ConvMixer sets none of its own)
    w = layers[0].filters()
    assert w.abs().max().item() <= 1 / kernel and w.std().item() == pytest.approx(1 / math.sqrt(3 * kernel**2),
                                                                                   rel=0.1)


def test_convnext_keeps_a_spatial_last_stage_on_32px():
    for name, sizes in (("convnext_cifar", [32, 16, 8, 4]), ("convnext_micro", [32, 16, 8, 4])):
        option = MODELS.default_options(name)
        assert option.feature_sizes() == sizes
        model = build_model(option, SPEC).eval()
        with torch.no_grad():
            feats = model.forward_intermediates(torch.randn(2, 3, 32, 32), intermediates_only=True)
        assert [f.shape[-1] for f in feats] == sizes and feats[-1].shape[-2:] == (4, 4)
        layers = find_depthwise_convs(model)
        assert len(layers) == sum(option.depths) and all(layer.kernel == (7, 7) for layer in layers)
        # default init: timm's trunc_normal std 0.02
        w = torch.cat([layer.filters().flatten() for layer in layers])
        assert w.std().item() == pytest.approx(0.02, rel=0.1)
    patch2 = MODELS.default_options("convnext_micro")
    patch2.patch_size = 2
    assert patch2.feature_sizes() == [8, 4, 2, 1]  # why the stem is patch 1: timm downsamples stage 0 too
    patch2.patch_size = 64
    assert any("leave no pixels" in p for p in patch2.problems("model"))


@pytest.mark.parametrize("timm_name", ["mimetic_convmixer_256_8_k5_p2", "mimetic_convmixer_256_8_k9_p1",
                                       "mimetic_convmixer_micro_k5_p4", "mimetic_convnext_cifar_p1",
                                       "mimetic_convnext_micro_p1"])
def test_registered_with_timm(timm_name):
    model = timm.create_model(timm_name, num_classes=7)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model(timm_name, pretrained=True)


@pytest.mark.parametrize("name", ["convmixer_micro", "convnext_micro"])
def test_freeze_depthwise_names_exactly_the_depthwise_filters(name):
    option = MODELS.default_options(name)
    assert option.freeze_patterns() == []
    option.freeze_depthwise = True
    model = build_model(option, SPEC)
    frozen = freeze_(model, option.freeze_patterns())
    assert frozen == [layer.weight_name for layer in find_depthwise_convs(model)]
    assert all(p.requires_grad == (n not in frozen) for n, p in model.named_parameters())

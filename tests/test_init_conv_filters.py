"""init=dw_impulse / init=dw_box: depthwise filters that are one-tap impulses or boxes, checked through the convs'
own forward, their scale, what they touch, the freeze_depthwise switch and the diagnostics."""

import dataclasses
import json
import math

import pytest
import torch
import torch.nn.functional as F
from timm.models.convmixer import ConvMixer
from torch import nn

from mimetic.init import (
    INITS,
    InitError,
    apply_init,
    depthwise_box_,
    depthwise_impulse_,
    diagnose_init,
    find_depthwise_convs,
    state_snapshot,
)
from mimetic.init.conv_filters import tap_covariance, tap_filters
from mimetic.models import MODELS, DataSpec, build_model, freeze_


def convmixer(kernel=3, dim=32, depth=2):
    torch.manual_seed(0)
    return ConvMixer(dim=dim, depth=depth, kernel_size=kernel, patch_size=4, num_classes=10)


def rms_norm(filters: torch.Tensor) -> float:
    return filters.reshape(filters.shape[0], -1).to(torch.float64).pow(2).sum(1).mean().sqrt().item()


def conv_output(layer, x):
    """What the real depthwise module computes, without its bias."""
    with torch.no_grad():
        return layer.module(x) - layer.module.bias.view(1, -1, 1, 1)


def test_impulses_shift_each_channel_by_its_tap_at_the_default_filter_norm():
    model = convmixer(kernel=3)
    layers = find_depthwise_convs(model)
    norms = [rms_norm(layer.filters()) for layer in layers]
    before = state_snapshot(model)
    assert depthwise_impulse_(model, generator=torch.Generator().manual_seed(0)) == 2
    x = torch.randn(2, 32, 9, 9)
    for layer, norm in zip(layers, norms):
        assert norm == pytest.approx(1 / math.sqrt(3), rel=0.15)  # PyTorch's U(-1/k, 1/k): E||w||^2 = 1/3
        f = layer.filters()
        assert ((f != 0).sum(1) == 1).all()  # one tap per channel
        assert torch.allclose(f.abs().sum(1), torch.full((32,), norm, dtype=f.dtype), rtol=1e-6)
        taps = f.abs().argmax(1)
        assert len(set(taps.tolist())) > 5  # drawn per channel, spread over the window
        out = conv_output(layer, x)
        pad = F.pad(x, (1, 1, 1, 1))
        for c in range(32):  # channel c is its input shifted by its tap's offset, times the impulse value
            dy, dx = divmod(int(taps[c]), 3)
            assert torch.allclose(out[:, c], norm * pad[:, c, dy:dy + 9, dx:dx + 9], atol=1e-5)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {f"{layer.name}.weight" for layer in layers}  # biases and everything else untouched


def test_cycle_assignment_and_value_one_impulses_copy_their_input():
    model = convmixer(kernel=3)
    depthwise_impulse_(model, norm=1.0, assign="cycle")
    for layer in find_depthwise_convs(model):
        f = layer.filters()
        assert torch.equal(f.argmax(1), torch.arange(32) % 9)
        assert torch.equal(f.sum(1), torch.ones(32))
        centre = 4  # channels 4, 13, 22, 31: the centre tap, an exact copy of the input
        x = torch.randn(1, 32, 6, 6)
        assert torch.allclose(conv_output(layer, x)[:, centre], x[:, centre], atol=1e-6)


def test_boxes_average_their_window_and_partial_boxes_take_random_taps():
    model = convmixer(kernel=5)
    norms = [rms_norm(layer.filters()) for layer in find_depthwise_convs(model)]
    depthwise_box_(model)
    x = torch.randn(2, 32, 7, 7)
    for layer, norm in zip(find_depthwise_convs(model), norms):
        f = layer.filters()
        assert torch.allclose(f, torch.full_like(f, norm / 5), rtol=1e-6)  # all 25 taps equal, L2 norm = norm
        box = F.avg_pool2d(F.pad(x, (2, 2, 2, 2)), 5, stride=1) * 25  # the sum over each 5x5 window
        assert torch.allclose(conv_output(layer, x), box * norm / 5, atol=1e-5)
    depthwise_box_(model, taps=4, norm=2.0, generator=torch.Generator().manual_seed(1))
    for layer in find_depthwise_convs(model):
        f = layer.filters()
        assert ((f != 0).sum(1) == 4).all() and torch.allclose(f.pow(2).sum(1), torch.full((32,), 4.0))
        assert len({tuple(row.nonzero().flatten().tolist()) for row in f}) > 20  # a random subset per channel


def test_seeds_reproduce_and_no_draw_for_deterministic_filters():
    a, b = convmixer(), convmixer()
    depthwise_impulse_(a, generator=torch.Generator().manual_seed(5))
    depthwise_impulse_(b, generator=torch.Generator().manual_seed(5))
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    depthwise_box_(a, generator=g)
    depthwise_impulse_(a, assign="cycle", generator=g)
    assert torch.equal(g.get_state(), state)


@pytest.mark.parametrize("name", ["dw_impulse", "dw_box"])
def test_they_combine_with_freeze_depthwise(name):
    option = dataclasses.replace(MODELS.default_options("convmixer_micro"), dim=16, depth=2, freeze_depthwise=True)
    torch.manual_seed(0)
    model = build_model(option, DataSpec("classification", num_classes=10))
    apply_init(model, name, torch.Generator().manual_seed(0))
    written = {layer.name: layer.filters().clone() for layer in find_depthwise_convs(model)}
    frozen = freeze_(model, option.freeze_patterns())  # what train.py does after the init
    assert sorted(frozen) == sorted(f"{n}.weight" for n in written)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    loss = model(torch.randn(4, 3, 32, 32)).logsumexp(1).mean()
    loss.backward()
    optimizer.step()
    for layer in find_depthwise_convs(model):
        assert torch.equal(layer.filters(), written[layer.name])  # kept exactly as the init wrote them
        assert layer.module.bias.grad is not None  # biases still train (only the filters are frozen)


def test_covariance_formula_matches_sampled_filters():
    for taps in (1, 3, 9):
        f = tap_filters(20000, 9, taps, 0.7, generator=torch.Generator().manual_seed(0))
        assert torch.allclose(torch.cov(f.T), tap_covariance(9, taps, 0.7), atol=0.01)
    assert torch.count_nonzero(tap_covariance(9, 9, 0.7)) == 0  # a full box: every channel the same filter


def test_diagnostics_compare_with_the_inits_own_covariance():
    model = convmixer(kernel=3, dim=256)
    before = state_snapshot(model)
    apply_init(model, "dw_impulse", torch.Generator().manual_seed(0))
    report = diagnose_init(model, "dw_impulse", before)
    json.dumps(report)
    dw = report["depthwise"]
    assert dw["target"] == "dw_impulse"
    for layer in dw["layers"]:
        assert layer["target_rel_err"] < 3 * layer["expected_rel_err"]
        assert layer["per_tap_std"] == pytest.approx(layer["target_per_tap_std"], rel=0.1)
    apply_init(model, "dw_box", None)
    box = diagnose_init(model, "dw_box", before)["depthwise"]
    assert all(layer["per_tap_std"] < 1e-6 and layer["target_per_tap_std"] == 0 for layer in box["layers"])


def test_other_architectures_get_their_own_default_norm():
    import timm

    model = timm.create_model("convnext_atto", num_classes=10)  # depthwise 7x7, trunc-normal std 0.02
    layers = find_depthwise_convs(model)
    norms = [rms_norm(layer.filters()) for layer in layers]
    depthwise_impulse_(model, generator=torch.Generator().manual_seed(0))
    for layer, norm in zip(layers, norms):
        assert norm == pytest.approx(0.02 * 7, rel=0.2)
        assert layer.filters().abs().amax(1).mean().item() == pytest.approx(norm, rel=1e-5)
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, 64, 64))).all()


def test_refusals_write_nothing():
    plain = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten())
    with pytest.raises(InitError, match="no depthwise convolutions"):
        depthwise_impulse_(plain)
    model = convmixer()
    before = state_snapshot(model)
    for call, kwargs, message in [
        (depthwise_impulse_, {"norm": -1.0}, "norm must be a finite number > 0"),
        (depthwise_impulse_, {"assign": "diagonal"}, "assign must be one of"),
        (depthwise_box_, {"taps": 0}, "taps must be an integer >= 1"),
    ]:
        with pytest.raises(InitError, match=message):
            call(model, **kwargs)
    with torch.no_grad():
        find_depthwise_convs(model)[1].module.weight.zero_()
    before = state_snapshot(model)
    with pytest.raises(InitError, match="all zeros"):
        depthwise_impulse_(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_registered_keys():
    def keys(name):
        return {f.name for f in dataclasses.fields(INITS.get(name).schema)} - {"name"}

    assert keys("dw_impulse") == {"norm", "assign"}
    assert keys("dw_box") == {"norm", "taps"}
    assert INITS.get("dw_box").schema(name="dw_box", taps=0).problems("init") == [
        "init.taps must be an integer >= 1 (taps set per filter) or null (all: the box filter), got 0"]

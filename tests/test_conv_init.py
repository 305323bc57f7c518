"""Covariance init of depthwise convolutions: the pure functions, the adapters, transfer, refusals."""

import math

import pytest
import torch
from torch import nn

from mimetic.init import (
    INITS,
    InitError,
    apply_init,
    depthwise_covariance_,
    depthwise_covariance_transfer_,
    diagnose_init,
    find_depthwise_convs,
    gaussian_covariance,
    init_options,
    state_snapshot,
)
from mimetic.init.covariance import depth_sigmas, empirical_covariance, layer_index_map, map_covariance, sample_filters
from mimetic.init.covariance_files import LayerCovariance, covariances_from_state, save_covariances
from mimetic.init.depthwise import learned_covariances


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


class DwNet(nn.Module):
    """A depthwise-conv model the project did not write (not timm): two depthwise convs, one ordinary conv,
    one grouped conv that is not depthwise."""

    def __init__(self, width=32, kernels=(3, 5), channels_mult=1):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 1)
        self.dws = nn.ModuleList([nn.Conv2d(width, width, k, padding=k // 2, groups=width) for k in kernels])
        self.grouped = nn.Conv2d(width, width, 3, padding=1, groups=width // 2)  # groups != channels: untouched
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        x = self.stem(x)
        for dw in self.dws:
            x = x + dw(x)
        return self.head(self.grouped(x).mean((2, 3)))


@pytest.mark.parametrize("kernel,sigma", [(3, 0.7), (5, 1.5)])
def test_sampled_filters_match_sigma_within_sampling_error(kernel, sigma):
    cov = 0.3**2 * gaussian_covariance(kernel, sigma)
    channels = 20000
    filters = sample_filters(gaussian_covariance(kernel, sigma), channels, 0.3, _gen())
    est = empirical_covariance(filters)
    # Var of a sample covariance entry of a Gaussian: (S_ii S_jj + S_ij^2) / C
    sd = ((torch.diagonal(cov)[:, None] * torch.diagonal(cov)[None, :] + cov**2) / channels).sqrt()
    z = ((est - cov) / sd).abs()
    assert z.max().item() < 5.0, z.max()
    assert filters.mean(0).abs().max().item() < 5 * 0.3 / math.sqrt(channels)


@pytest.mark.parametrize("kernel", [1, 2, 3, 5, 7, 9, (3, 5)])
@pytest.mark.parametrize("sigma", [1e-3, 0.3, 1.0, 2.5, 10.0, 100.0])
def test_sigma_is_symmetric_psd_for_every_choice(kernel, sigma):
    cov = gaussian_covariance(kernel, sigma)
    assert torch.equal(cov, cov.T)
    assert torch.allclose(torch.diagonal(cov), torch.ones(cov.shape[0], dtype=cov.dtype))
    assert torch.linalg.eigvalsh(cov).min().item() > -1e-10


def test_sigma_to_zero_gives_iid_taps_and_the_kernel_is_the_stated_one():
    assert torch.equal(gaussian_covariance(5, 1e-3), torch.eye(25, dtype=torch.float64))
    cov = gaussian_covariance(3, 1.3)
    # taps (0,0) and (1,2): distance^2 = 1 + 4
    assert cov[0, 1 * 3 + 2].item() == pytest.approx(math.exp(-5 / (2 * 1.3**2)))


def test_depth_schedule_is_linear_from_first_to_last():
    assert depth_sigmas(5, 0.5, 1.5) == pytest.approx([0.5, 0.75, 1.0, 1.25, 1.5])
    assert depth_sigmas(1, 0.5, 1.5) == [0.5]
    model = DwNet(kernels=(3, 3, 3))
    depthwise_covariance_(model, sigma_first=0.5, sigma_last=2.0, generator=_gen())
    report = apply_init(DwNet(kernels=(3, 3, 3)), {"name": "dw_covariance", "sigma_first": 0.5, "sigma_last": 2.0},
                        _gen())
    assert [d["sigma"] for d in report["depthwise"]] == pytest.approx([0.5, 1.25, 2.0])


def test_library_call_on_a_foreign_model_writes_only_depthwise_filters():
    torch.manual_seed(0)
    model = DwNet(width=64)
    before = state_snapshot(model)
    n = depthwise_covariance_(model, sigma_first=0.5, sigma_last=1.5, generator=_gen())
    assert n == 2 and [layer.name for layer in find_depthwise_convs(model)] == ["dws.0", "dws.1"]
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"dws.0.weight", "dws.1.weight"}
    # scale=None keeps the default init's per-tap variance (PyTorch's Kaiming-uniform: 1/(3 k^2))
    for layer, k in zip(find_depthwise_convs(model), (3, 5)):
        assert layer.filters().std().item() == pytest.approx(1 / math.sqrt(3 * k * k), rel=0.15)
    # seeded: the same generator gives the same filters
    again = DwNet(width=64)
    again.load_state_dict(before)
    depthwise_covariance_(again, sigma_first=0.5, sigma_last=1.5, generator=_gen())
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_diagnostics_report_covariance_against_the_target():
    model = DwNet(width=512, kernels=(3, 3))
    before = state_snapshot(model)
    opts = {"name": "dw_covariance", "sigma_first": 0.6, "sigma_last": 1.8}
    apply_init(model, opts, _gen())
    report = diagnose_init(model, opts, before)["depthwise"]
    assert report["target"] == "dw_covariance" and len(report["layers"]) == 2
    for layer in report["layers"]:
        assert layer["target_rel_err"] < 2 * layer["expected_rel_err"]
        assert layer["neighbour_corr"] == pytest.approx(layer["target_neighbour_corr"], abs=0.1)
    default = diagnose_init(DwNet(width=512), "default", None)["depthwise"]
    assert default["target"] == "iid" and abs(default["mean_neighbour_corr"]) < 0.1


@pytest.mark.parametrize("bad", [{"sigma_first": 0.0}, {"sigma_last": -1.0}, {"sigma_first": float("nan")},
                                 {"scale": 0.0}])
def test_bad_parameters_are_one_clear_message(bad):
    opts = {"name": "dw_covariance", "sigma_first": 0.5, "sigma_last": 1.0, **bad}
    key = next(iter(bad))
    with pytest.raises(InitError, match=f"init.{key} must be a finite number > 0"):
        init_options(opts)
    with pytest.raises(InitError, match="must be a finite number > 0"):
        depthwise_covariance_(DwNet(), **{"sigma_first": 0.5, "sigma_last": 1.0, **bad})
    with pytest.raises(ValueError, match="sigma must be a finite number > 0"):  # the math alone: a ValueError
        gaussian_covariance(3, 0.0)


def test_a_model_without_depthwise_convs_is_refused_and_untouched():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3, groups=2))
    before = state_snapshot(model)
    with pytest.raises(InitError, match="no depthwise convolutions"):
        depthwise_covariance_(model, sigma_first=1, sigma_last=1)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


# ----------------------------------------------------------------------------- transfer
def _trained_like(width=256, kernels=(5, 5, 5, 5), seed=1):
    """A model whose depthwise filters carry a known covariance per layer (stands in for a trained one)."""
    model = DwNet(width=width, kernels=kernels)
    for i, layer in enumerate(find_depthwise_convs(model)):
        layer.write(sample_filters(gaussian_covariance(layer.kernel, 0.5 + i), width, 0.1, _gen(seed + i)))
    return model


def test_covariance_file_roundtrip_and_transfer_across_depth(tmp_path):
    src = _trained_like()
    layers = covariances_from_state(src.state_dict(), "src")
    assert [c.kernel for c in layers] == [(5, 5)] * 4 and layers[0].cov.shape == (25, 25)
    path = save_covariances(layers, tmp_path / "cov.pt", source="src")
    loaded = learned_covariances(path)
    assert all(torch.equal(a.cov, b.cov) for a, b in zip(layers, loaded))
    # 4 source layers -> 2 target layers: first and last by relative depth
    assert layer_index_map(4, 2) == [0, 3] and layer_index_map(2, 5) == [0, 0, 1, 1, 1]
    target = DwNet(width=2048, kernels=(5, 5))
    report = apply_init(target, {"name": "dw_covariance_transfer", "path": str(path), "rescale": "learned"}, _gen())
    assert [d["source"] for d in report["depthwise"]] == ["dws.0", "dws.3"]
    for layer, src_cov in zip(find_depthwise_convs(target), (layers[0].cov, layers[3].cov)):
        est = empirical_covariance(layer.filters())
        norm = torch.linalg.norm(src_cov)
        expected = ((norm**2 + torch.trace(src_cov) ** 2) / layer.channels).sqrt() / norm  # sampling error alone
        assert (torch.linalg.norm(est - src_cov) / norm).item() < 1.5 * expected.item()


def test_transfer_across_kernel_size_and_rescale_to_default(tmp_path):
    path = save_covariances(covariances_from_state(_trained_like(kernels=(5, 5)).state_dict()), tmp_path / "c.pt")
    model = DwNet(width=1024, kernels=(3, 9))
    defaults = [layer.filters().std().item() for layer in find_depthwise_convs(model)]
    depthwise_covariance_transfer_(model, path, generator=_gen())
    for layer, std in zip(find_depthwise_convs(model), defaults):
        est = empirical_covariance(layer.filters())
        assert est.shape == (layer.kernel[0] ** 2,) * 2
        assert torch.diagonal(est).mean().sqrt().item() == pytest.approx(std, rel=0.1)  # rescale=default
    # the resized covariance stays PSD and keeps positive neighbour correlation
    cov = learned_covariances(path)[1].cov
    for k in (3, 7, 9):
        mapped = map_covariance(cov, (5, 5), (k, k))
        assert torch.linalg.eigvalsh(mapped).min().item() > -1e-10 and torch.equal(mapped, mapped.T)
    cropped = map_covariance(cov, (5, 5), (3, 3), "crop")
    centre = [6, 7, 8, 11, 12, 13, 16, 17, 18]
    assert torch.equal(cropped, cov[centre][:, centre])


def test_transfer_refusals_are_one_clear_message(tmp_path):
    no_dw = tmp_path / "plain.pt"
    torch.save(nn.Linear(4, 4).state_dict(), no_dw)
    with pytest.raises(InitError, match="holds no depthwise conv filters"):
        learned_covariances(no_dw)
    with pytest.raises(InitError, match="init.path=.*no such file"):
        init_options({"name": "dw_covariance_transfer", "path": str(tmp_path / "missing.pt")})
    with pytest.raises(InitError, match="needs init.path"):
        init_options({"name": "dw_covariance_transfer"})
    one_tap = [LayerCovariance("a", (1, 1), 8, torch.ones(1, 1, dtype=torch.float64), torch.zeros(1))]
    path = save_covariances(one_tap, tmp_path / "one.pt")
    with pytest.raises(InitError, match="cannot map a 1-tap source kernel"):
        depthwise_covariance_transfer_(DwNet(), path)
    five = save_covariances(covariances_from_state(_trained_like(kernels=(5,)).state_dict()), tmp_path / "5.pt")
    with pytest.raises(InitError, match="kernel_map=exact"):
        depthwise_covariance_transfer_(DwNet(kernels=(3,)), five, kernel_map="exact")
    with pytest.raises(InitError, match="cannot crop"):
        depthwise_covariance_transfer_(DwNet(kernels=(7,)), five, kernel_map="crop")
    with pytest.raises(InitError, match="no depthwise convolutions"):
        depthwise_covariance_transfer_(nn.Sequential(nn.Conv2d(3, 3, 3)), five)


# ----------------------------------------------------------------------------- composites
class AttnAndDw(nn.Module):
    def __init__(self, width=32):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, 2, batch_first=True)
        self.dw = nn.Conv2d(width, width, 3, padding=1, groups=width)

    def forward(self, x):
        return self.attn(x, x, x)[0]


def test_attention_and_conv_inits_compose():
    assert {"mimetic+dw_covariance", "mimetic+dw_covariance_transfer"} <= set(INITS.names())
    model = AttnAndDw()
    before = state_snapshot(model)
    opts = {"name": "mimetic+dw_covariance", "alpha_qk": 0.5, "sigma_first": 0.4, "sigma_last": 0.4}
    report = apply_init(model, opts, _gen())
    assert report["attention"]["layers"] == 1 and report["depthwise"]["layers"] == 1
    assert report["attention"]["alpha_qk"] == 0.5
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert "dw.weight" in changed and "attn.in_proj_weight" in changed
    diagnostics = diagnose_init(model, opts, before)
    assert "attention" in diagnostics and diagnostics["depthwise"]["target"] == "mimetic+dw_covariance"
    with pytest.raises(InitError, match="init.sigma_first must be"):
        init_options({**opts, "sigma_first": -1})
    with pytest.raises(InitError, match="alpha_qk must be"):
        init_options({**opts, "alpha_qk": -1})


@pytest.mark.parametrize("arch", ["mobilenetv3_small_050", "efficientnet_b0", "convnext_atto"])
def test_models_the_project_did_not_write(arch):
    import timm

    model = timm.create_model(arch, num_classes=10)
    layers = find_depthwise_convs(model)
    defaults = [layer.filters().std().item() for layer in layers]
    assert depthwise_covariance_(model, sigma_first=0.5, sigma_last=1.5, generator=_gen()) == len(layers) > 5
    for layer, std in zip(layers, defaults):  # per-tap variance of the init it replaced, within sampling error
        assert layer.filters().std().item() == pytest.approx(std, rel=0.5)
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(2, 3, 64, 64))).all()


def _grayscale_convmixer_run(run_dir):
    """A run directory of convmixer_micro on 1-channel images: its stem conv weight is (64, 1, 4, 4), the shape
    of a depthwise filter bank, and its config.yaml / checkpoint.pt are what train.py writes."""
    from dataclasses import asdict

    from mimetic.models import MODELS, DataSpec, build_model
    from mimetic.runtime.checkpoint import save_atomic
    from mimetic.runtime.rundir import RunDir

    options = MODELS.default_options("convmixer_micro")
    torch.manual_seed(0)
    model = build_model(options, DataSpec("classification", num_classes=10, in_chans=1))
    rundir = RunDir(run_dir)
    rundir.ensure()
    rundir.write_config({"model": asdict(options), "seed": 0})
    save_atomic({"model": model.state_dict()}, run_dir / "checkpoint.pt")
    return model


@pytest.fixture
def readers(monkeypatch):
    """The init's source readers, emptied for the test (the harness registers its run-directory reader there)."""
    from mimetic.init import sources

    monkeypatch.setattr(sources, "_READERS", [])
    return sources


class Bottleneck(nn.Module):
    """A 1-channel bottleneck: ``expand`` (8, 1, 3, 3) is fed by an earlier layer and shaped like a depthwise filter
    bank, but is a dense conv on one channel; only the structure tells it from ``dw``."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 1)
        self.squeeze = nn.Conv2d(8, 1, 1)
        self.expand = nn.Conv2d(1, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)


def test_the_source_structure_comes_from_a_skeleton_or_a_registered_reader(tmp_path, readers):
    from mimetic.init import SourceModel, register_source_reader

    torch.manual_seed(0)
    state = Bottleneck().state_dict()
    torch.save({"model": state}, tmp_path / "checkpoint.pt")
    with torch.device("meta"):
        skeleton = Bottleneck()
    # Shapes alone take the bottleneck's expansion for a depthwise layer; the architecture does not.
    assert [c.name for c in learned_covariances(state)] == ["expand", "dw"]
    assert [c.name for c in learned_covariances(tmp_path / "checkpoint.pt")] == ["expand", "dw"]
    assert [c.name for c in learned_covariances(state, skeleton=skeleton)] == ["dw"]
    # A reader that knows the file (as the harness's knows a run directory) answers for a checkpoint.
    asked = []

    @register_source_reader
    def mine(path, got):
        asked.append(path)
        return SourceModel(skeleton, "a test's skeleton") if path.parent == tmp_path else None

    assert register_source_reader(mine) is mine and readers._READERS == [mine]  # registering again: no change
    assert [c.name for c in learned_covariances(tmp_path / "checkpoint.pt")] == ["dw"]
    assert asked == [tmp_path / "checkpoint.pt"]
    model = DwNet(width=8, kernels=(3,))
    assert depthwise_covariance_transfer_(model, tmp_path / "checkpoint.pt", generator=_gen()) == 1


def test_a_one_channel_stem_is_not_taken_for_a_depthwise_layer(tmp_path, readers):
    """The source scan took a (C, 1, k, k) stem for the first depthwise layer, shifting the layer map."""
    from timm.models.vision_transformer import VisionTransformer

    from mimetic.init.covariance_files import depthwise_weights_in_state
    from mimetic.train.source_run import run_source_model

    model = _grayscale_convmixer_run(tmp_path / "run")
    assert tuple(model.state_dict()["stem.0.weight"].shape) == (64, 1, 4, 4)
    expected = [layer.name for layer in find_depthwise_convs(model)]
    assert len(expected) == 4 and "stem.0" not in expected
    # A run directory, with the harness's reader registered: the model its config.yaml describes decides (run
    # dir, or its checkpoint file).
    readers.register_source_reader(run_source_model)
    assert [c.name for c in learned_covariances(tmp_path / "run")] == expected
    assert [c.name for c in learned_covariances(tmp_path / "run" / "checkpoint.pt")] == expected
    # A bare state dict: shapes, but a depthwise conv's C input channels must come from an earlier layer.
    torch.save(model.state_dict(), tmp_path / "state.pt")
    assert [c.name for c in learned_covariances(tmp_path / "state.pt")] == expected
    vit = VisionTransformer(img_size=32, patch_size=4, in_chans=1, embed_dim=48, depth=1, num_heads=3)
    assert depthwise_weights_in_state(vit.state_dict()) == []  # its (48, 1, 4, 4) patch embedding is no filter bank
    # The map a transfer uses: first and last target layers from the source's first and last depthwise layers.
    target = DwNet(width=64, kernels=(5, 5))
    report = apply_init(target, {"name": "dw_covariance_transfer", "path": str(tmp_path / "run")}, _gen())
    assert [d["source"] for d in report["depthwise"]] == [expected[0], expected[-1]]


def test_covariance_script_reads_a_runs_structure(tmp_path, capsys):
    from helpers import load_script

    model = _grayscale_convmixer_run(tmp_path / "run")
    script = load_script("scripts/prepare_data.py")
    command = ["covariance", str(tmp_path / "run"), "--out", str(tmp_path / "cov.pt")]
    assert script.main(command) == 2  # no DONE: one message
    assert "is not a finished run (no DONE); pass --allow-unfinished" in capsys.readouterr().err
    assert script.main([*command, "--allow-unfinished"]) == 0
    expected = [layer.name for layer in find_depthwise_convs(model)]
    assert [c.name for c in learned_covariances(tmp_path / "cov.pt")] == expected

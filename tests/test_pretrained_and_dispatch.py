"""pretrained_attention_ copies exactly the attention tensors; apply_init dispatches by name."""

import pytest
import torch
from conftest import make_vit
from omegaconf import OmegaConf
from safetensors.torch import save_file

from mimetic.errors import ConfigError
from mimetic.init import INITS, InitError, apply_init, pretrained_attention_

ATTN = ("attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias")


def is_attention_key(key: str) -> bool:
    return key.startswith("blocks.") and key.endswith(ATTN)


def randomised_source(depth=2, dim=48, heads=3):
    source = make_vit(dim=dim, heads=heads, depth=depth, seed=123)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(torch.randn_like(p))  # non-zero biases, far from any fresh init
    return source


@pytest.mark.parametrize("fmt", ["pth", "pth_wrapped", "safetensors"])
def test_copies_exactly_the_attention_tensors(tmp_path, fmt):
    source = randomised_source()
    path = tmp_path / ("ckpt.safetensors" if fmt == "safetensors" else "ckpt.pth")
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    if fmt == "safetensors":
        save_file(state, str(path))
    else:
        torch.save({"model": state, "epoch": 3} if fmt == "pth_wrapped" else state, path)

    target = make_vit(dim=48, heads=3, depth=2, seed=0)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    assert pretrained_attention_(target, path) == 2
    for key, value in target.state_dict().items():
        if is_attention_key(key):
            assert torch.equal(value, source.state_dict()[key]), key
        else:
            assert torch.equal(value, before[key]), key
    assert sum(is_attention_key(k) for k in before) == 8


def test_missing_file_and_mismatches(tmp_path):
    target = make_vit(dim=48, heads=3, depth=2)
    with pytest.raises(InitError, match="not found: .*nope.pth .*Pass an existing"):
        pretrained_attention_(target, tmp_path / "nope.pth")
    wide = tmp_path / "wide.pth"
    torch.save(randomised_source(dim=96).state_dict(), wide)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(InitError, match="shape mismatch"):
        pretrained_attention_(target, wide)
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # nothing half-written
    deep = tmp_path / "deep.pth"
    torch.save(randomised_source(depth=3).state_dict(), deep)
    with pytest.raises(InitError, match="depth mismatch"):
        pretrained_attention_(target, deep)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InitError, match="could not read"):
        pretrained_attention_(target, junk)


def test_apply_init_dispatch(tmp_path):
    base = make_vit(dim=48, heads=3, depth=1)
    names = {}
    # depthwise inits: test_conv_init.py, test_init_conv_filters.py; impulse (a fixed 2-D table): test_init_impulse.py
    for name in [n for n in INITS.names() if "dw_" not in n and n != "impulse"]:
        model = make_vit(dim=48, heads=3, depth=1)
        cfg = {"name": name, "alpha_qk": 0.7, "beta_qk": 0.7, "alpha_vo": 0.4, "beta_vo": 0.4}
        if name == "pretrained_attention":
            path = tmp_path / "src.pth"
            torch.save(randomised_source(depth=1).state_dict(), path)
            cfg["checkpoint"] = str(path)
        report = apply_init(model, OmegaConf.create(cfg), torch.Generator().manual_seed(0))
        names[name] = report
        qkv, old = model.blocks[0].attn.qkv.weight, base.blocks[0].attn.qkv.weight
        proj, old_proj = model.blocks[0].attn.proj.weight, base.blocks[0].attn.proj.weight
        if name == "default":
            assert torch.equal(qkv, old) and torch.equal(proj, old_proj)
        if name == "mimetic_qk":
            assert not torch.equal(qkv[:96], old[:96]) and torch.equal(proj, old_proj)
        if name == "mimetic_vo":
            assert torch.equal(qkv[:96], old[:96]) and not torch.equal(proj, old_proj)
        if name in ("mimetic", "pretrained_attention"):
            assert not torch.equal(qkv, old) and not torch.equal(proj, old_proj)
        if name == "mimetic_simple":  # keys and values only
            assert torch.equal(qkv[:48], old[:48]) and not torch.equal(qkv[48:], old[48:])
            assert torch.equal(proj, old_proj)
        if name == "vo_nonzero":
            assert torch.equal(qkv[:96], old[:96]) and not torch.equal(proj, old_proj)
    assert names["default"]["layers"] == 0 and names["mimetic"]["layers"] == 1
    assert set(names) == {"default", "mimetic", "mimetic_qk", "mimetic_vo", "pretrained_attention", "mimetic_simple",
                          "vo_nonzero"}
    with pytest.raises(ConfigError, match="'mimetics' is not a registered init; choose one of: default, .*mimetic"):
        apply_init(base, {"name": "mimetics"})
    with pytest.raises(InitError, match="init=pretrained_attention needs init.checkpoint="):
        apply_init(base, {"name": "pretrained_attention"})


def _vit_run(run_dir, heads: int):
    """A run directory of vit_micro (width 32) with ``heads`` heads, as train.py writes it (config + checkpoint)."""
    from dataclasses import asdict, replace

    from mimetic.models import MODELS, DataSpec, build_model
    from mimetic.runtime.checkpoint import save_atomic
    from mimetic.runtime.rundir import RunDir

    options = replace(MODELS.default_options("vit_micro"), dim=32, depth=2, heads=heads)
    torch.manual_seed(heads)
    model = build_model(options, DataSpec("classification", num_classes=10, in_chans=3, image_size=32))
    rundir = RunDir(run_dir)
    rundir.ensure()
    rundir.write_config({"model": asdict(options), "seed": 0})
    save_atomic({"model": model.state_dict()}, run_dir / "checkpoint.pt")
    return options, model


@pytest.fixture
def run_reader(monkeypatch):
    """The harness's reader of run directories, registered with the init (as the harness does) for the test."""
    from mimetic.init import sources
    from mimetic.train.source_run import run_source_model

    monkeypatch.setattr(sources, "_READERS", [])
    sources.register_source_reader(run_source_model)


def test_a_checkpoint_with_other_heads_is_refused_naming_both_counts(tmp_path, run_reader):
    """Same width, same shapes: a 2-head checkpoint used to be copied into a 4-head model without a word."""
    from dataclasses import replace

    from mimetic.models import DataSpec, build_model

    options, _ = _vit_run(tmp_path / "run", heads=2)
    target = build_model(replace(options, heads=4), DataSpec("classification", num_classes=10, image_size=32))
    before = {k: v.clone() for k, v in target.state_dict().items()}
    for source in (tmp_path / "run", tmp_path / "run" / "checkpoint.pt"):
        with pytest.raises(InitError) as err:
            pretrained_attention_(target, source)
        message = str(err.value)
        assert "head mismatch" in message and "trained with 2 attention heads" in message, message
        assert "the model has 4" in message and "config.yaml" in message and "model.heads=2" in message
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())  # nothing written
    same = build_model(options, DataSpec("classification", num_classes=10, image_size=32))
    assert pretrained_attention_(same, tmp_path / "run") == 2  # the checkpoint's own head count: copied


def test_a_timm_name_records_its_head_count_without_the_network():
    from mimetic.init.pretrained import source_heads

    heads, where = source_heads("vit_tiny_patch16_224", {})
    assert heads == [3] * 12 and "vit_tiny_patch16_224" in where
    assert source_heads("no_such_model_name", {}) is None

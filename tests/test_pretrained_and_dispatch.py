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
    for name in [n for n in INITS.names() if "dw_covariance" not in n]:  # depthwise inits: test_conv_init.py
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
    assert names["default"]["layers"] == 0 and names["mimetic"]["layers"] == 1
    assert set(names) == {"default", "mimetic", "mimetic_qk", "mimetic_vo", "pretrained_attention"}
    with pytest.raises(ConfigError, match="'mimetics' is not a registered init; choose one of: default, .*mimetic"):
        apply_init(base, {"name": "mimetics"})
    with pytest.raises(InitError, match="init=pretrained_attention needs init.checkpoint="):
        apply_init(base, {"name": "pretrained_attention"})

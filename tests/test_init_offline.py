"""A timm model name as pretrained source fails within seconds without network, with the fix."""

import time

import pytest
import torch
from conftest import make_vit

from mimetic.init import InitError, apply_init, pretrained_attention_
from mimetic.init import pretrained as pretrained_module


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """No cached weights: the test must not pass or fail because of what a machine downloaded before."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)


def test_hub_offline_env_fails_fast_with_the_fix(empty_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(InitError) as info:
        pretrained_attention_(make_vit(dim=48, heads=3, depth=1), "vit_tiny_patch16_224.augreg_in21k_ft_in1k")
    assert time.monotonic() - start < 10
    text = str(info.value)
    assert "HF_HUB_OFFLINE is set" in text and "not in the local cache" in text
    assert "download the weights" in text and "init.checkpoint=/path/to/model.safetensors" in text


def test_unreachable_hub_fails_fast(empty_hub_cache, monkeypatch):
    monkeypatch.setattr(pretrained_module, "hub_unreachable_reason", lambda: "huggingface.co:443 cannot be reached")
    start = time.monotonic()
    with pytest.raises(InitError, match="hub is not available .*huggingface.co:443.*download the weights"):
        apply_init(make_vit(dim=48, heads=3, depth=1),
                   {"name": "pretrained_attention", "checkpoint": "vit_tiny_patch16_224"})
    assert time.monotonic() - start < 10


def test_this_machine_without_network_fails_fast(empty_hub_cache):
    # The real check, no stubs: where the hub answers there is nothing to test here.
    start = time.monotonic()
    reason = pretrained_module.hub_unreachable_reason()
    if reason is None:
        pytest.skip("the Hugging Face hub is reachable from this machine")
    with pytest.raises(InitError, match="download the weights"):
        pretrained_attention_(make_vit(dim=48, heads=3, depth=1), "vit_tiny_patch16_224")
    assert time.monotonic() - start < 10


def test_hub_state_is_restored_after_the_call(empty_hub_cache, monkeypatch):
    import os

    from huggingface_hub import constants

    monkeypatch.setattr(pretrained_module, "hub_unreachable_reason", lambda: "stubbed")
    with pytest.raises(InitError):
        pretrained_attention_(make_vit(dim=48, heads=3, depth=1), "vit_tiny_patch16_224")
    assert constants.HF_HUB_OFFLINE is False and "HF_HUB_OFFLINE" not in os.environ


def test_missing_file_through_the_library_call_names_path_and_fix(tmp_path):
    missing = tmp_path / "weights" / "vit.safetensors"
    with pytest.raises(InitError, match=f"not found: {missing} .*init.checkpoint="):
        pretrained_attention_(make_vit(dim=48, heads=3, depth=1), missing)


def test_name_that_is_neither_file_nor_timm_model():
    start = time.monotonic()
    with pytest.raises(InitError, match="'vit_tinny' is neither an existing file nor a timm model name"):
        pretrained_attention_(make_vit(dim=48, heads=3, depth=1), "vit_tinny")
    assert time.monotonic() - start < 2


def test_missing_file_is_an_init_error_naming_path_and_fix(tmp_path):
    missing = tmp_path / "weights" / "vit.safetensors"
    with pytest.raises(InitError, match=f"{missing}: no such file.*init.checkpoint="):
        apply_init(make_vit(dim=48, heads=3, depth=1), {"name": "pretrained_attention", "checkpoint": str(missing)})


def test_checkpoint_for_unsupported_attention_is_refused_before_reading(tmp_path):
    model = make_vit(dim=48, heads=3, depth=1, qk_norm=True)
    path = tmp_path / "src.pth"
    torch.save(make_vit(dim=48, heads=3, depth=1).state_dict(), path)
    with pytest.raises(InitError, match="qk_norm"):
        pretrained_attention_(model, path)

"""diagnose_init: what an init touched and the attention it left, for any model (JSON-ready)."""

import json

import pytest
import torch
from conftest import make_vit
from timm.models.convmixer import ConvMixer
from timm.models.xcit import Xcit

from mimetic.init import InitError, apply_init, diagnose_init, state_snapshot


def tiny_convmixer() -> ConvMixer:
    torch.manual_seed(0)
    return ConvMixer(dim=32, depth=2, kernel_size=3, patch_size=4, num_classes=10)


def test_default_on_a_vit_changes_nothing_and_measures_attention():
    model = make_vit(dim=48, heads=3, depth=2)
    before = state_snapshot(model)
    apply_init(model, "default")
    report = diagnose_init(model, {"name": "default"}, before)
    json.dumps(report)
    assert report["changed_tensors"] == []
    assert report["unchanged_count"] == len(model.state_dict())
    assert len(report["attention"]["layers"]) == 2
    assert abs(report["attention"]["mean"]["vo_diag_mean"]) < 0.05


def test_mimetic_on_a_vit_reports_exactly_the_attention_weights():
    model = make_vit(dim=48, heads=3, depth=2)
    before = state_snapshot(model)
    cfg = {"name": "mimetic", "beta_vo": 0.6}
    apply_init(model, cfg, torch.Generator().manual_seed(0))
    report = diagnose_init(model, cfg, before)
    json.dumps(report)
    assert report["init"] == "mimetic"
    assert report["changed_tensors"] == [f"blocks.{i}.attn.{n}.weight" for i in range(2) for n in ("qkv", "proj")]
    assert report["unchanged_count"] == len(before) - 4
    assert report["attention"]["mean"]["vo_diag_mean"] == pytest.approx(-0.6, abs=0.06)
    # The init's own beta (0.6, not the paper's 0.4) is the target of target_rel_err:
    # ||0.4 Z - 0.6 I - (-0.6 I)|| / ||0.6 I|| = 0.4 / 0.6 (against -0.4 I it would be ~1.1).
    for layer in report["attention"]["layers"]:
        assert layer["vo"]["target_rel_err"] == pytest.approx(0.4 / 0.6, rel=0.1)


def test_without_before_the_change_fields_are_null():
    report = diagnose_init(make_vit(dim=48, heads=3, depth=1), "default")
    assert report["changed_tensors"] is None and report["unchanged_count"] is None
    assert "attention" in report


def test_default_on_a_conv_net_has_no_attention_section():
    model = tiny_convmixer()
    before = state_snapshot(model)
    apply_init(model, "default")
    report = diagnose_init(model, "default", before)
    depthwise = report.pop("depthwise")  # a conv net's depthwise filters against i.i.d. taps (issue 8)
    assert report == {"init": "default", "changed_tensors": [], "unchanged_count": len(before)}
    assert depthwise["target"] == "iid"


def test_changed_tensors_are_found_in_a_conv_net():
    model = tiny_convmixer()
    before = state_snapshot(model)
    with torch.no_grad():
        model.stem[0].weight.mul_(2)
    report = diagnose_init(model, "default", before)
    assert report["changed_tensors"] == ["stem.0.weight"]


def test_attention_init_on_a_conv_net_raises():
    with pytest.raises(InitError, match="ConvMixer has no recognised self-attention"):
        apply_init(tiny_convmixer(), "mimetic")
    with pytest.raises(InitError, match="ConvMixer has no recognised self-attention"):
        diagnose_init(tiny_convmixer(), "mimetic")


def test_default_on_unsupported_attention_reports_why_instead_of_failing():
    torch.manual_seed(0)
    model = Xcit(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, cls_attn_layers=1, num_classes=10)
    report = diagnose_init(model, "default", state_snapshot(model))
    json.dumps(report)
    assert "attention" not in report
    unsupported = report["attention_unsupported"]
    assert [u["module"] for u in unsupported["unsupported"]] == ["blocks.0.attn"]
    assert "cross-covariance" in unsupported["unsupported"][0]["why"]
    assert unsupported["unrecognised"] == [{"module": "cls_attn_blocks.0.attn", "class": "ClassAttn"}]

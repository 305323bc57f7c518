"""INITS: names, typed schemas, problems(); apply_init builds options from any config-like object."""

import inspect
import json
from dataclasses import fields

import pytest
import torch
from conftest import make_vit
from omegaconf import OmegaConf

from mimetic.errors import ConfigError
from mimetic.init import (
    INIT_NAMES,
    INITS,
    PAPER_COEFFICIENTS,
    InitError,
    MimeticOptions,
    apply_init,
    attention_products,
    init_options,
    mimetic_attention_,
)
from mimetic.registry import Option


def keys(name: str) -> set[str]:
    return {f.name for f in fields(INITS.get(name).schema)} - {"name"}


def test_names_and_schemas():
    assert INITS.names() == ["default", "dw_box", "dw_covariance", "dw_covariance_transfer", "dw_impulse", "impulse",
                             "mimetic", "mimetic+dw_covariance", "mimetic+dw_covariance_transfer", "mimetic_qk",
                             "mimetic_simple", "mimetic_vo", "pretrained_attention", "vo_nonzero"]
    assert INIT_NAMES == tuple(INITS.names())
    assert keys("default") == set()
    assert keys("mimetic") == {"alpha_qk", "beta_qk", "alpha_vo", "beta_vo", "sign_qk", "sign_vo", "solver"}
    assert keys("mimetic_qk") == {"alpha_qk", "beta_qk", "sign_qk", "solver"}
    assert keys("mimetic_vo") == {"alpha_vo", "beta_vo", "sign_vo", "solver"}
    assert keys("pretrained_attention") == {"checkpoint"}
    for name in INITS.names():
        assert issubclass(INITS.get(name).schema, Option)
        assert INITS.default_options(name).name == name


def test_paper_coefficients_are_the_one_default():
    assert (PAPER_COEFFICIENTS.alpha_qk, PAPER_COEFFICIENTS.beta_qk) == (0.7, 0.7)
    assert (PAPER_COEFFICIENTS.alpha_vo, PAPER_COEFFICIENTS.beta_vo) == (0.4, 0.4)
    signature = inspect.signature(mimetic_attention_).parameters
    for name in ("mimetic", "mimetic_qk", "mimetic_vo"):
        options = INITS.default_options(name)
        for key in keys(name) - {"solver"}:
            paper = {"sign_qk": 1, "sign_vo": -1}.get(key) or getattr(PAPER_COEFFICIENTS, key)  # vision signs
            assert getattr(options, key) == paper == signature[key].default


@pytest.mark.parametrize("key", ["alpha_qk", "beta_qk", "alpha_vo", "beta_vo"])
@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -0.1, "abc"])
def test_problems_name_the_full_key(key, bad):
    problems = MimeticOptions(name="mimetic", **{key: bad}).problems("init")
    assert problems == [
        f"init.{key} must be a finite number >= 0, got {bad!r} "
        "(the sign of each target is set by init.sign_qk / init.sign_vo: +I for QK, -I for VO by default)"
    ]
    with pytest.raises(InitError, match=f"init.{key} must be a finite number >= 0"):
        apply_init(make_vit(dim=32, heads=2, depth=1, img=16), {"name": "mimetic", key: bad})


def test_problems_accept_good_values_and_ints():
    assert MimeticOptions(name="mimetic").problems("init") == []
    assert MimeticOptions(name="mimetic", alpha_qk=0, beta_qk=1).problems("init") == []
    assert INITS.default_options("default").problems("init") == []


def test_pretrained_needs_a_checkpoint():
    for missing in (None, "", "  "):
        assert INITS.get("pretrained_attention").schema(name="pretrained_attention", checkpoint=missing).problems(
            "init"
        ) == ["init=pretrained_attention needs init.checkpoint=<.pth/.safetensors file or timm name>"]


def test_override_of_one_key_works_through_omegaconf():
    # `init=mimetic init.alpha_qk=0.5`: the other keys keep the paper's values.
    cfg = OmegaConf.create({"name": "mimetic", "alpha_qk": 0.5})
    options = init_options(cfg)
    assert (options.alpha_qk, options.beta_qk, options.alpha_vo, options.beta_vo) == (0.5, 0.7, 0.4, 0.4)
    a, b = make_vit(dim=64, heads=2, depth=1), make_vit(dim=64, heads=2, depth=1)
    report = apply_init(a, cfg, torch.Generator().manual_seed(0))
    assert report == {"init": "mimetic", "layers": 1, "alpha_qk": 0.5, "beta_qk": 0.7, "alpha_vo": 0.4,
                      "beta_vo": 0.4, "sign_qk": 1, "sign_vo": -1, "solver": "auto",
                      "solver_used": "svd"}
    json.dumps(report)
    mimetic_attention_(b, alpha_qk=0.5, generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_ablations_ignore_the_other_products_keys():
    # A config node carrying every key (as the old config files did) still works for each ablation.
    cfg = {"alpha_qk": 0.7, "beta_qk": 0.7, "alpha_vo": 0.4, "beta_vo": 0.4, "checkpoint": None}
    assert not hasattr(init_options({"name": "mimetic_qk", **cfg}), "alpha_vo")
    assert not hasattr(init_options({"name": "mimetic_vo", **cfg}), "alpha_qk")
    assert init_options({"name": "default", **cfg}) == INITS.default_options("default")


def test_apply_init_accepts_names_options_and_objects():
    model = make_vit(dim=32, heads=2, depth=1, img=16)
    assert apply_init(model, "default") == {"init": "default", "layers": 0}
    assert apply_init(model, MimeticOptions(name="mimetic"))["layers"] == 1
    assert apply_init(model, OmegaConf.structured(MimeticOptions(name="mimetic_vo")))["init"] == "mimetic_vo"
    with pytest.raises(ConfigError, match="init.name is missing; choose one of: default, dw_box, .*mimetic"):
        apply_init(model, {"alpha_qk": 0.5})
    with pytest.raises(ConfigError, match="not a registered init"):
        apply_init(model, {"name": "mimetics"})


def test_registered_ablation_sets_only_its_product():
    model = make_vit(dim=64, heads=2, depth=1)
    apply_init(model, {"name": "mimetic_vo", "beta_vo": 0.8}, torch.Generator().manual_seed(0))
    layer = attention_products(model)[0]
    assert layer.vo_stats["diag_mean"] == pytest.approx(-0.8, abs=0.05)
    assert all(abs(s["diag_mean"]) < 0.1 for s in layer.qk_stats)  # QK keeps timm's init

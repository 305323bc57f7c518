"""init.solver: the factorisation chosen from the config, products equal, identities kept."""

from __future__ import annotations

import pytest
import torch
from helpers import TINY, composed

from mimetic.errors import MimeticError
from mimetic.init import apply_init
from mimetic.init.layers import scan_attention
from mimetic.train.config import load_config, run_key


def products(model):
    out = []
    for layer in scan_attention(model).layers:
        q, k = layer.q_weight().double(), layer.k_weight().double()
        out.append(q.T @ k)
    return out


@pytest.mark.parametrize("name", ["mimetic", "mimetic_qk", "mimetic+dw_covariance"])
def test_eigh_from_the_config_gives_the_reference_products(vit_factory, name):
    def model():  # attention, plus a depthwise conv for the composite init to fill
        return torch.nn.ModuleDict({"vit": vit_factory(dim=48, heads=3, depth=2),
                                    "dw": torch.nn.Conv2d(8, 8, 3, groups=8)})

    reference, fast = model(), model()
    a = apply_init(reference, {"name": name}, torch.Generator().manual_seed(0))
    b = apply_init(fast, {"name": name, "solver": "eigh"}, torch.Generator().manual_seed(0))
    report_a = a.get("attention", a)
    report_b = b.get("attention", b)
    assert report_a["solver"] == "auto" and report_a["solver_used"] == "svd"  # width 48: the reference
    assert report_b["solver"] == report_b["solver_used"] == "eigh"
    for pa, pb in zip(products(reference), products(fast)):
        assert torch.linalg.norm(pa - pb) <= 1e-5 * torch.linalg.norm(pa)


def test_the_default_solver_keeps_existing_run_identities_and_another_one_is_a_new_run(folder_root):
    args = [*TINY, "dataset=image_folder", f"dataset.root={folder_root}", "init=mimetic"]
    plain = run_key(load_config(composed(*args)))
    assert run_key(load_config(composed(*args, "init.solver=auto"))) == plain
    assert run_key(load_config(composed(*args, "init.solver=svd"))) != plain
    assert run_key(load_config(composed(*args, "init.solver=eigh"))) != plain


def test_an_unknown_solver_is_one_message_naming_the_choices():
    with pytest.raises(MimeticError, match="init.solver='qr' is not one of: auto, svd, eigh, mixed, randomized"):
        load_config(composed("init=mimetic", "init.solver=qr"))

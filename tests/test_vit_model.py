"""The paper's ViT: fixed sin-cos position embedding and step-0 attention locality."""

import pytest
import torch

from mimetic.init import mimetic_attention_
from mimetic.init.diagnostics import attention_maps
from mimetic.models import DataSpec, ViTTiny, sincos_2d_table
from mimetic.models import build_vit as _build_vit


def build_vit(cfg, num_classes):
    return _build_vit(cfg, DataSpec("classification", num_classes=num_classes))


TINY = ViTTiny()  # the paper's ViT-Tiny: dim 192, depth 12, 3 heads, patch 2, 32 px


def test_sincos_table_layout():
    table = sincos_2d_table((4, 6), dim=32, num_prefix_tokens=1)[0]
    assert table.shape == (25, 32)
    assert torch.equal(table[0], torch.zeros(32))  # the class token has no position
    grid = table[1:].reshape(4, 6, 32)
    sim = lambda a, b: torch.dot(a, b).item()  # noqa: E731
    # Row-major like timm's patch order: neighbours are more alike than far patches.
    assert sim(grid[1, 2], grid[1, 3]) > sim(grid[1, 2], grid[1, 5])
    assert sim(grid[1, 2], grid[2, 2]) > sim(grid[1, 2], grid[3, 2])
    assert sim(grid[1, 2], grid[1, 2]) > sim(grid[1, 2], grid[1, 3])


def test_fixed_pos_embed_is_a_buffer_in_state_dict_not_in_optimizer():
    cfg = ViTTiny(dim=48, depth=1, heads=3, patch_size=8)
    model = build_vit(cfg, num_classes=10)
    assert "pos_embed" in dict(model.named_buffers())
    assert "pos_embed" not in dict(model.named_parameters())
    assert "pos_embed" in model.state_dict()
    assert torch.equal(model.state_dict()["pos_embed"][0, 1:], sincos_2d_table((4, 4), 48, 0)[0])
    opt = torch.optim.AdamW(model.parameters())
    in_opt = {id(p) for group in opt.param_groups for p in group["params"]}
    assert id(model.pos_embed) not in in_opt
    before = model.pos_embed.clone()
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    opt.step()
    assert torch.equal(model.pos_embed, before)
    # Round trip through a checkpoint.
    other = build_vit(cfg, num_classes=10)
    other.load_state_dict(model.state_dict())


def test_learned_and_mean_pooling_variants():
    learned = build_vit(ViTTiny(dim=48, depth=1, heads=3, patch_size=8, pos_embed="learned"), 10)
    assert "pos_embed" in dict(learned.named_parameters())
    mean = build_vit(ViTTiny(dim=48, depth=1, heads=3, patch_size=8, pooling="mean"), 10)
    assert mean.cls_token is None and mean.pos_embed.shape == (1, 16, 48)
    assert mean(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def local_attention_mass(maps: list[torch.Tensor], grid: int) -> float:
    """Mean attention a patch query puts on its own position and its 4 neighbours."""
    n = grid * grid
    mask = torch.zeros(n, n, dtype=torch.bool)
    for r in range(grid):
        for c in range(grid):
            for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
                if 0 <= r + dr < grid and 0 <= c + dc < grid:
                    mask[r * grid + c, (r + dr) * grid + c + dc] = True
    masses = [(m[:, :, 1:, 1:] * mask).sum(-1).mean().item() for m in maps]
    return sum(masses) / len(masses)


def test_mimetic_vit_tiny_attends_locally_at_init():
    torch.manual_seed(0)
    default = build_vit(TINY, num_classes=10)
    mimetic = build_vit(TINY, num_classes=10)
    mimetic.load_state_dict(default.state_dict())
    mimetic_attention_(mimetic, generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, 3, 32, 32)
    grid = TINY.img_size // TINY.patch_size
    base = local_attention_mass(attention_maps(default, x), grid)
    ours = local_attention_mass(attention_maps(mimetic, x), grid)
    uniform = 5 / (grid * grid + 1)
    assert base == pytest.approx(uniform, rel=0.5)  # default init: nearly uniform attention
    assert ours > 2 * base, (ours, base)


def test_our_variants_are_registered_with_timm():
    import timm

    import mimetic.models  # noqa: F401  (registers them)

    model = timm.create_model("mimetic_vit_tiny_patch2_32", num_classes=10)
    assert model.embed_dim == 192 and len(model.blocks) == 12 and model.patch_embed.patch_size == (2, 2)
    assert "pos_embed" in dict(model.named_buffers())  # the fixed sin-cos embedding
    micro = timm.create_model("mimetic_vit_micro_patch4_32", num_classes=7, depth=2)
    assert micro.embed_dim == 64 and len(micro.blocks) == 2 and micro.head.out_features == 7
    assert micro(torch.zeros(1, 3, 32, 32)).shape == (1, 7)
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("mimetic_vit_micro_patch4_32", pretrained=True)

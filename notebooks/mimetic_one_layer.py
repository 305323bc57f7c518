# %% [markdown]
# # Mimetic init on one attention layer, step by step
#
# Headless (run as a script, or open as a percent-format notebook in VS Code / Jupytext):
#
#     python notebooks/mimetic_one_layer.py                 # writes outputs/figures/mimetic_one_layer.png/.pdf
#
# One layer of width d = 64 with 2 heads (head dim k = 32), the paper's coefficients:
#
# 1. draw Z with i.i.d. N(0, 1/d) entries, a fresh one per head;
# 2. the QK target per head is alpha_1 Z + beta_1 I (0.7, 0.7);
# 3. a head can only compute a rank-k product W_q^T W_k (W_q, W_k are k x d), so the target is
#    replaced by its best rank-k approximation, split evenly by the SVD: W_q^T = U_k S_k^1/2,
#    W_k = S_k^1/2 V_k^T;
# 4. the VO target per layer is alpha_2 Z - beta_2 I (0.4, 0.4), full rank (the heads' value
#    slices add up to d), split the same way into W_v^T and W_o^T;
# 5. the library does exactly this (``mimetic_attention_``): checked at the end on a real
#    ``nn.MultiheadAttention`` through its forward.

# %%
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from mimetic.analysis.figures import pyplot
from mimetic.analysis.outputs import fingerprint, save_figure
from mimetic.init.factorize import balanced_factors, identity_plus_noise

D, HEADS, SEED = 64, 2, 0
K = D // HEADS
ALPHA_QK, BETA_QK, ALPHA_VO, BETA_VO = 0.7, 0.7, 0.4, 0.4
DEFAULT_OUT = Path("outputs/figures/mimetic_one_layer.png")


# %% [markdown]
# ## Steps 1-3: the QK product of one head

# %%
def qk_head(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Target, factors and product of one head's QK (float64)."""
    target = identity_plus_noise(D, D, alpha=ALPHA_QK, beta=BETA_QK, generator=generator)  # alpha Z + beta I
    left, right = balanced_factors(target, K)  # (d x k) U S^1/2 and (k x d) S^1/2 V^T
    w_q, w_k = left.T, right  # nn.Linear layout: (k x d) each
    return {"target": target, "w_q": w_q, "w_k": w_k, "product": w_q.T @ w_k}


# %% [markdown]
# ## Step 4: the VO product of the layer

# %%
def vo_layer(generator: torch.Generator) -> dict[str, torch.Tensor]:
    target = identity_plus_noise(D, D, alpha=ALPHA_VO, beta=-BETA_VO, generator=generator)  # alpha Z - beta I
    left, right = balanced_factors(target, D)  # full rank: the split is exact
    w_v, w_o = left.T, right.T  # W_v^T = U S^1/2, W_o^T = S^1/2 V^T
    return {"target": target, "w_v": w_v, "w_o": w_o, "product": w_v.T @ w_o.T}


# %% [markdown]
# ## Step 5: the same through the library, on a real module

# %%
def library_products() -> tuple[torch.Tensor, torch.Tensor]:
    """Per-head QK and the VO product of an ``nn.MultiheadAttention`` after ``mimetic_attention_``,
    measured through its forward (not read off the weights)."""
    from mimetic.init import attention_products, mimetic_attention_

    torch.manual_seed(SEED)
    layer = torch.nn.Sequential(torch.nn.MultiheadAttention(D, HEADS, batch_first=True))
    written = mimetic_attention_(layer, generator=torch.Generator().manual_seed(SEED))  # the layers it wrote
    (measured,) = attention_products(layer, layers=written)
    return measured.qk, measured.vo


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return (torch.linalg.norm(a - b) / torch.linalg.norm(b)).item()


# %%
def draw(heads: list[dict], vo: dict, qk_lib: torch.Tensor, vo_lib: torch.Tensor, out: Path, stamp: str) -> None:
    plt = pyplot()
    panels = [(heads[0]["target"], "head 0: target alpha Z + beta I"),
              (heads[0]["product"], f"head 0: W_q^T W_k (rank {K})"),
              (heads[1]["product"], f"head 1: W_q^T W_k (rank {K})"),
              (qk_lib[0], "head 0, library, measured"),
              (vo["target"], "VO target alpha Z - beta I"),
              (vo["product"], "VO: W_v^T W_o^T"),
              (vo_lib, "VO, library, measured")]
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.8))
    try:
        for ax, (mat, title) in zip(axes.flat, panels):
            ax.imshow(mat.numpy(), cmap="RdBu_r", vmin=-1, vmax=1)
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        ax = axes.flat[-1]
        s = torch.linalg.svdvals(heads[0]["target"])
        ax.semilogy(s.numpy(), label="QK target")
        ax.axvline(K - 0.5, color="grey", ls="--", lw=0.8)
        ax.semilogy(torch.linalg.svdvals(heads[0]["product"]).clamp_min(1e-12).numpy(), label="head product")
        ax.set_ylim(1e-3, None)
        ax.set_title(f"singular values (kept: first {K})", fontsize=9)
        ax.legend(fontsize=8)
        fig.suptitle(f"Mimetic init of one layer (d={D}, {HEADS} heads): products on a shared colour scale "
                     "[-1, 1]; red +, blue -", fontsize=10)
        fig.tight_layout()
        save_figure(fig, out, stamp)
    finally:
        plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Mimetic init on one layer, step by step.")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"PNG to write (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)

    generator = torch.Generator().manual_seed(SEED)
    heads = [qk_head(generator) for _ in range(HEADS)]  # a fresh Z per head
    vo = vo_layer(generator)
    for i, head in enumerate(heads):
        rank = int(torch.linalg.matrix_rank(head["product"]).item())
        print(f"head {i}: W_q, W_k {tuple(head['w_q'].shape)}; product rank {rank}; "
              f"diag mean {head['product'].diagonal().mean():.3f} (target {BETA_QK}); "
              f"distance to target {relative(head['product'], head['target']):.3f}")
    print(f"VO: diag mean {vo['product'].diagonal().mean():.3f} (target {-BETA_VO}); "
          f"distance to target {relative(vo['product'], vo['target']):.1e} (full rank: exact)")
    qk_lib, vo_lib = library_products()
    # Same seed and order as above (heads' QK noise, then the layer's VO noise), so the library's
    # products are the ones computed by hand, up to float32 storage.
    print(f"library vs by hand: QK {relative(qk_lib[0], heads[0]['product']):.1e}, "
          f"VO {relative(vo_lib, vo['product']):.1e}")
    stamp = fingerprint({"notebook": "mimetic_one_layer", "d": D, "heads": HEADS, "seed": SEED})
    draw(heads, vo, qk_lib, vo_lib, args.out, stamp)
    print(f"wrote {args.out} and {args.out.with_suffix('.pdf')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

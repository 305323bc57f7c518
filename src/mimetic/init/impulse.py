"""Impulse ("structured") initialisation of ViT attention (Zheng, Li, Lucey; issue 22).

References (read for the method, no code taken): arXiv 2404.01139 ("Structured Initialization for
Attention in Vision Transformers") and its code ``osiriszjq/structured_init`` / ``osiriszjq/impulse_init``;
arXiv 2505.19985 (NeurIPS 2025, "Structured Initialization for Vision Transformers") and its code
``osiriszjq/structured_initialization`` (``timm/models/vision_transformer.py``: ``impulse_init`` and the
``post_init_weights('impulse')`` branch).

The idea: a CNN's depthwise filters can be random *impulses* (one tap set) and still train as well as learned
ones; a ViT head whose step-0 attention map is such an impulse -- every patch token attends to the token at
one fixed spatial offset ``(dy, dx)`` of a ``k x k`` window -- is a convolution-like head. The queries and
keys are solved for so that the attention the position embeddings alone produce is that map.

What this module does, per attention layer ``l`` and head ``h``:

1. **Pseudo-input.** ``X = LayerNorm(P)`` (no affine), ``P`` the (N x d) fixed position embeddings of the N
   patch tokens (grid row-major). In a pre-norm block the attention sees ``LN(x + P)``; like the papers, the
   content ``x`` is ignored at init and every layer uses the same ``X``. Prefix (class/register) tokens
   are not part of the target: with the project's ViTs (a zero table row, ``cls_token`` ~1e-6, which the
   LayerNorm maps to ~0) the class token is a key with logit ~0 that takes < 1% of a patch's attention
   (measured), and its own query spreads over the patches; the papers use global average pooling instead.
2. **Target.** ``T`` (N x N): ``T[i, j] = 1`` where token ``j`` sits at offset ``(dy, dx)`` of token ``i``
   (row ``y + dy``, column ``x + dx``), 0 elsewhere. A token whose neighbour falls outside the grid has an
   all-zero row (as in their code, "zero padding"): after the solve such a token spreads its attention along
   the line through it that the in-grid part of the offset still defines (e.g. a top-row token with offset
   "up" attends over its own column). The NeurIPS code also adds small noise off the impulse
   (3 x trunc-normal(0.6) against 1000 on it); not done here.
3. **Least squares, regularised.** ``min_M ||X M X^T - T||_F^2 + lam ||M||_F^2`` in closed form:
   with ``X = U S V^T`` (singular values below 1e-10 s_max dropped), ``M = V N V^T``,
   ``N_ab = s_a s_b (U^T T U)_ab / ((s_a s_b)^2 + lam)``, ``lam = (ridge * s_max^2)^2``. Their code instead
   keeps the top ``head_dim`` singular directions of ``X^T X`` (an unregularised truncated pseudo-inverse).
   Why not that: a 2-D sin-cos table of an ``H x W`` grid has rank ``H + W - 1`` only (its features are
   functions of the row or of the column) with a fast-decaying spectrum, so the plain pseudo-inverse
   inverts singular values ~1e-16 and gives weights ~1e6; the ridge keeps them O(0.1) while every
   in-grid token still has its argmax on the target (checked on 4x4, 8x8, 14x14 and 16x16 grids). With a
   sin-cos table the logits are sums of terms in one coordinate of the query and one of the key (no term sees
   a key's row and column together), so the fit puts a row peak and a column peak whose sum is largest at the
   offset, and the softmax sharpens that into a 2-D impulse.
4. **Factors.** ``M`` (rank <= min(head_dim, H + W - 1)) is split with the balanced SVD split mimetic uses
   (:func:`mimetic.init.factorize.balanced_factors`): ``W_q^h^T = V U_M S_M^1/2``, ``W_k^h = S_M^1/2 V_M^T V^T``.
   Unused head units (head_dim > rank of ``M``; e.g. ViT-Tiny: rank ~25 of 64) get zero query rows and random
   key rows (the spare rule of ``balanced_factors``): the product is unchanged and no unit is dead.
5. **Temperature** (``scale``): both factors are multiplied by the same factor so that, through the module's own
   logit scale (1/sqrt(head_dim) in timm), the target's logit exceeds the best other patch token's by
   ``scale`` on average over the in-grid tokens. Scale 4 puts ~0.94 (vit_micro) / ~0.95 (ViT-Tiny/2) of
   each token's attention on its offset neighbour from the position embeddings alone (scale 3: ~0.87; 6:
   ~0.99), with query/key weights of rms ~0.35 (vit_micro) / ~0.12 (ViT-Tiny) against timm's 0.02. The
   default, 0.5, was chosen on a validation split (experiment tune_impulse_scale, vit_micro, 10 epochs: val acc
   50.8 / 50.8 / 28.6 / 24.2 / 19.8 at scale 0.25 / 0.5 / 1 / 2 / 4): at scale >= 1 the step-0 attention on
   real images is nearly one-hot (content adds logits of the same size) and training sat near chance for
   epochs. At 0.5 the offset is still every in-grid token's argmax from the positions alone, with ~0.16 of the
   attention on it (10x uniform), and query/key rms ~0.11 (vit_micro) / ~0.04 (ViT-Tiny).
   Their NeurIPS code instead sets each factor's Frobenius norm to 7 ("norm_q"), which in our emulation of
   their setting (learned random PE) gives ~0.5 on shifted heads and ~0.99 on the centre head of ViT-Tiny.
   With image content added (``LN(x + P)``) the impulses blur: measured on layer 0 with i.i.d. N(0, 1)
   pixels, the shifted heads of ViT-Tiny keep ~0.16 of their attention on the offset (the centre head
   ~0.77), ~0.44 with ``pos_scale=2``; the papers ignore the content at init, and so does this init.
6. **Offsets** (``assign``): the order is the centre, then up, right, left, down, then the diagonals up-left,
   up-right, down-left, down-right (their NeurIPS code's ``[4, 1, 5, 3, 7, 0, 2, 6, 8]`` on the row-major 3x3
   window), then, for larger windows, the remaining offsets by ring, distance and row-major position.
   ``layer`` (default, their NeurIPS code): head ``h`` of every layer takes offset ``h mod k^2`` (so with 3
   heads every layer has centre/up/right, and a window larger than 3x3 changes nothing unless a layer
   has more than 9 heads: configs/init/impulse_k5.yaml therefore counts across the network);
   ``network``: the count runs on across layers (head ``h`` of layer
   ``l`` takes ``(l * heads + h) mod k^2``: every offset is used somewhere); ``random``: an offset drawn
   uniformly per head and layer (their 2404.01139 code draws per head, shared by all layers).
7. **Value / projection** (``vo``): their NeurIPS code sets ``W_v^T W_o^T`` to mimetic's ``0.4 Z - 0.4 I``
   ("norm_v" = 1, with the correct transposes in the impulse branch); ``vo=true`` does the same through
   mimetic's own VO job. ``vo=false`` leaves V/proj at the model's init (the 2404.01139 code).
8. **Position-embedding scale** (``pos_scale``): their NeurIPS code multiplies a *learned*, randomly
   initialised table (std 0.02) by 18 ("norm_p") so that positions dominate the content at step 0. Here the
   table must be fixed (a 2-D sin-cos table, rms ~0.7 per entry); ``pos_scale`` (default 1: untouched)
   multiplies it. It does not change the solve (LayerNorm removes a global scale), only the content/position
   balance of the real input.

Draw order (``generator``): all layers' query/key parts first (per layer, per head: the offset if
``assign=random``, then the spare key rows if head_dim > rank), then, per layer, mimetic's VO target.

Preconditions, refused with :class:`InitError` before anything is written: a timm-style ViT (``pos_embed``
and ``patch_embed.grid_size``) whose position embedding is fixed (a buffer or ``requires_grad=False``: the
project's ``model.pos_embed=sincos``), a square grid, a fixed image size, attention layers of the table's
width that the adapters support, no causal masking, ``kernel_size`` odd and at most the grid side. Other
models pass their own table: ``impulse_attention_(model, pos_embed=P, grid=(g, g))``.

Biases and every tensor other than the query/key rows (and the value/projection weights with ``vo``,
and ``pos_embed`` with ``pos_scale != 1``) are left as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from mimetic.init.attention import (
    PAPER_COEFFICIENTS,
    attention_layers_or_raise,
    mimetic_vo_job,
    reference_vo_,
    vo_solver,
    write_layers_,
)
from mimetic.init.base import INITS, SCANNED, InitError
from mimetic.init.factorize import balanced_factors
from mimetic.init.layers import AttentionAdapter
from mimetic.init.solvers import solver_problem
from mimetic.registry import Option

ASSIGNS = ("layer", "network", "random")
#: Their 3x3 order (row-major indices 4, 1, 5, 3, 7, 0, 2, 6, 8) as (dy, dx) offsets.
_RING_ONE = [(0, 0), (-1, 0), (0, 1), (0, -1), (1, 0), (-1, -1), (-1, 1), (1, -1), (1, 1)]
#: Singular values of the LayerNorm'd table below this fraction of the largest are treated as zero.
_RANK_RTOL = 1e-10
#: LayerNorm epsilon of the pseudo-input (timm's ViT blocks use 1e-6).
_LN_EPS = 1e-6
SOURCE_FIX = ("model.pos_embed=sincos (the project's ViTs), or mimetic.models.pos_embed.use_fixed_sincos_pos_embed_"
              "(vit) for a timm or torchvision VisionTransformer")


def offset_order(kernel_size: int) -> list[tuple[int, int]]:
    """The ``k^2`` offsets ``(dy, dx)`` of a ``k x k`` window in the order heads take them (module docstring, 6)."""
    r = kernel_size // 2
    rest = [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if max(abs(dy), abs(dx)) > 1]
    rest.sort(key=lambda o: (max(abs(o[0]), abs(o[1])), o[0] ** 2 + o[1] ** 2, o[0], o[1]))
    return [o for o in _RING_ONE if max(abs(o[0]), abs(o[1])) <= r] + rest


def impulse_targets(grid: tuple[int, int], offset: tuple[int, int]) -> torch.Tensor:
    """For each of the H*W tokens (row-major), the index of its neighbour at ``offset``, or -1 outside the grid."""
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ty, tx = ys.flatten() + offset[0], xs.flatten() + offset[1]
    inside = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w)
    return torch.where(inside, ty * w + tx, torch.full_like(ty, -1))


def pseudo_input(table: torch.Tensor) -> torch.Tensor:
    """``LayerNorm(P)`` without affine, float64 (N x d): what a pre-norm block sees when the content is zero."""
    t = table.detach().to("cpu", torch.float64)
    return F.layer_norm(t, (t.shape[-1],), eps=_LN_EPS)


@dataclass
class PositionTable:
    """The fixed position embeddings of a model's patch tokens: (N, d) rows of an ``H x W`` grid, row-major."""

    patches: torch.Tensor
    grid: tuple[int, int]
    source: str
    full: torch.Tensor | None = None  # the model's whole table, prefix rows included (None: passed in by the caller)


def _is_fixed(tensor: torch.Tensor) -> bool:
    return not (isinstance(tensor, nn.Parameter) and tensor.requires_grad)


def _vit_tables(model: nn.Module) -> list[tuple[str, nn.Module, torch.Tensor, tuple[int, ...], bool]]:
    """Every ViT in ``model`` as (where its table is, the ViT, the table, the token grid, dynamic grid?).

    Two layouts: timm's (``pos_embed`` beside ``patch_embed.grid_size``) and torchvision's
    (``encoder.pos_embedding`` beside the ints ``image_size`` and ``patch_size``; the class token's row first).
    """
    found = []
    for name, m in model.named_modules():
        prefix = f"{name}." if name else ""
        grid_size = getattr(getattr(m, "patch_embed", None), "grid_size", None)
        if isinstance(getattr(m, "pos_embed", None), torch.Tensor) and grid_size is not None:
            found.append((f"{prefix}pos_embed", m, m.pos_embed, tuple(int(g) for g in grid_size),
                          bool(getattr(m, "dynamic_img_size", False))))
        table = getattr(getattr(m, "encoder", None), "pos_embedding", None)
        size, patch = getattr(m, "image_size", None), getattr(m, "patch_size", None)
        if isinstance(table, torch.Tensor) and isinstance(size, int) and isinstance(patch, int) and patch > 0:
            found.append((f"{prefix}encoder.pos_embedding", m, table, (size // patch, size // patch), False))
    return found


def find_position_table(model: nn.Module) -> PositionTable:
    """The fixed 2-D position table of the (one) ViT in ``model`` (timm's or torchvision's layout), or an
    :class:`InitError` with the fix."""
    vits = _vit_tables(model)
    if not vits:
        raise InitError(
            f"init=impulse needs a ViT with fixed 2-D position embeddings (a timm-style VisionTransformer: "
            f"pos_embed and patch_embed.grid_size, or torchvision's: encoder.pos_embedding); "
            f"{type(model).__name__} has none. Use {SOURCE_FIX}; for "
            "another model pass its table: impulse_attention_(model, pos_embed=P, grid=(g, g))")
    if len(vits) > 1:
        raise InitError(f"init=impulse found several ViTs ({', '.join(w for w, *_ in vits)}); pass the "
                        "table of the one to initialise: impulse_attention_(model, pos_embed=P, grid=(g, g))")
    where, vit, pos, grid, dynamic = vits[0]
    if not _is_fixed(pos):
        raise InitError(f"init=impulse needs fixed position embeddings, but {where} is a trained parameter "
                        f"(learned embeddings would move away from the table the heads were solved for); use "
                        f"{SOURCE_FIX}")
    if dynamic:
        raise InitError(f"init=impulse needs a fixed token grid; {type(vit).__name__} ({where}) was built with "
                        "dynamic_img_size=True")
    if len(grid) != 2 or grid[0] != grid[1]:
        raise InitError(f"init=impulse needs a square token grid; {type(vit).__name__} ({where}) has {grid} "
                        "(use a square img_size)")
    n = grid[0] * grid[1]
    rows = pos.reshape(-1, pos.shape[-1])
    if rows.shape[0] < n:
        raise InitError(f"{where} has {rows.shape[0]} rows, fewer than the {n} patch tokens of its {grid} grid")
    return PositionTable(rows[rows.shape[0] - n:], grid, where, pos)  # prefix rows (if any) come first


def _table_from_arguments(pos_embed: torch.Tensor, grid: Any) -> PositionTable:
    try:
        h, w = (int(grid), int(grid)) if isinstance(grid, int) else tuple(int(g) for g in grid)
    except (TypeError, ValueError):
        raise InitError(f"grid must be (H, W) or an int, got {grid!r}") from None
    if h != w or h < 1:
        raise InitError(f"impulse init needs a square token grid, got {(h, w)}")
    rows = pos_embed.reshape(-1, pos_embed.shape[-1])
    if rows.shape[0] != h * w:
        raise InitError(f"pos_embed has {rows.shape[0]} rows; a {h}x{w} grid has {h * w} patch tokens (pass only "
                        "the patch rows, row-major)")
    return PositionTable(rows, (h, w), "pos_embed argument")


# ----------------------------------------------------------------------------- the solve
@dataclass
class TableBasis:
    """``X = LN(P) = U S V^T`` (rank ``rho``), shared by every head."""

    x: torch.Tensor  # (N, d)
    u: torch.Tensor  # (N, rho)
    s: torch.Tensor  # (rho,)
    v: torch.Tensor  # (d, rho)

    @classmethod
    def of(cls, table: torch.Tensor) -> TableBasis:
        x = pseudo_input(table)
        u, s, vh = torch.linalg.svd(x, full_matrices=False)
        if not (s.numel() and torch.isfinite(s).all() and s[0] > 0):
            raise InitError("the position table is zero (or not finite): the heads have nothing to tell tokens apart")
        keep = s > _RANK_RTOL * s[0]
        return cls(x, u[:, keep], s[keep], vh[keep].T)


@dataclass
class HeadSolution:
    offset: tuple[int, int]
    q: torch.Tensor  # (head_dim, d): rows for W_q
    k: torch.Tensor  # (head_dim, d): rows for W_k
    rank: int
    margin_unscaled: float
    argmax_ok: float  # fraction of in-grid tokens whose largest logit is on the target (from P alone)


def solve_head(basis: TableBasis, grid: tuple[int, int], offset: tuple[int, int], head_dim: int, *, scale: float,
               ridge: float, logit_scale: float, generator: torch.Generator | None = None) -> HeadSolution:
    """Query/key rows of one head whose step-0 attention over ``LN(P)`` is the impulse at ``offset``."""
    targets = impulse_targets(grid, offset)
    rows = (targets >= 0).nonzero().flatten()
    if rows.numel() == 0:
        raise InitError(f"offset {offset} leaves the {grid[0]}x{grid[1]} grid for every token; use a smaller "
                        "init.kernel_size")
    u, s = basis.u, basis.s
    c = u[rows].T @ u[targets[rows]]  # U^T T U
    ss = s[:, None] * s[None, :]
    lam = (ridge * s[0].item() ** 2) ** 2
    n = c * ss / (ss**2 + lam)  # the ridge solution in V coordinates: M = V n V^T
    left, right = balanced_factors(n, head_dim, generator=generator)  # (rho, hd), (hd, rho)
    left, right, rank = _revive(left, right, generator)
    logits = (u * s) @ left @ right @ (u * s).T  # X M X^T on the patch tokens
    target_logit = logits[rows, targets[rows]]
    others = logits[rows].clone()
    others[torch.arange(rows.numel()), targets[rows]] = -math.inf
    margin = target_logit - others.max(dim=1).values
    mean_margin = margin.mean().item()
    if not (math.isfinite(mean_margin) and mean_margin > 0):
        raise InitError(f"the position embeddings cannot place an impulse at offset {offset} (mean logit margin "
                        f"{mean_margin:.3g}); check the table is a 2-D position embedding ({SOURCE_FIX})")
    gain = math.sqrt(scale / (mean_margin * logit_scale))
    q = (basis.v @ left).T * gain
    k = (right @ basis.v.T) * gain
    return HeadSolution(offset, q, k, rank, mean_margin, (margin > 0).double().mean().item())


def _revive(left: torch.Tensor, right: torch.Tensor,
            generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Units whose singular value is ~0 (``M`` has lower rank than the table) get the spare rule of
    :func:`mimetic.init.factorize.balanced_factors`: a zero query column and a random key row, so the product is
    unchanged and the unit is not stuck at zero on both sides. Returns the factors and the product's rank."""
    values = left.pow(2).sum(dim=0)  # the singular value of each unit (||U_j s_j^1/2||^2)
    live = values > 1e-9 * values.max()
    spare_rows = (left.abs().sum(dim=0) == 0) & (right.abs().sum(dim=1) > 0)  # already spares
    dead = ~live & ~spare_rows
    if dead.any():
        device = generator.device if generator is not None else torch.device("cpu")
        draws = torch.randn(int(dead.sum()), right.shape[1], generator=generator, device=device, dtype=torch.float64)
        left, right = left.clone(), right.clone()
        left[:, dead] = 0
        right[dead] = draws.cpu() * values[live].sqrt().mean() / math.sqrt(right.shape[1])
    return left, right, int(live.sum())


# ----------------------------------------------------------------------------- step-0 attention, measured
def position_attention(layer: AttentionAdapter, basis_or_table: TableBasis | torch.Tensor,
                       grid: tuple[int, int]) -> list[dict]:
    """Per head, the attention the real module computes over ``LN(P)`` (patch tokens alone): its impulse.

    Each head's offset is read off the forward (the most common argmax displacement over tokens), then
    ``target_mass`` is the mean attention on the token at that offset over the tokens that have one, and
    ``argmax_rate`` the share of those tokens whose largest attention is there. Any init can be measured
    this way (mimetic's heads come out as offset (0, 0) with a low mass).
    """
    x = basis_or_table.x if isinstance(basis_or_table, TableBasis) else pseudo_input(basis_or_table)
    device = layer.q_weight().device
    tokens = x.to(device)
    probs = layer.attention_log_probs(tokens, tokens).exp().cpu()  # (heads, N, N)
    h, w = grid
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    out = []
    for head in probs:
        arg = head.argmax(dim=1)
        dy, dx = ys[arg] - ys, xs[arg] - xs
        pairs = torch.stack([dy, dx], 1)
        values, counts = torch.unique(pairs, dim=0, return_counts=True)
        offset = tuple(int(v) for v in values[counts.argmax()])
        targets = impulse_targets(grid, offset)
        rows = (targets >= 0).nonzero().flatten()
        mass = head[rows, targets[rows]]
        out.append({"offset": list(offset), "target_mass": mass.mean().item(),
                    "argmax_rate": (arg[rows] == targets[rows]).double().mean().item(),
                    "edge_tokens": int((targets < 0).sum())})
    return out


# ----------------------------------------------------------------------------- the init
def _check_options(kernel_size: Any, scale: Any, assign: Any, ridge: Any, pos_scale: Any,
                   prefix: str = "") -> list[str]:
    out = []
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        out.append(f"{prefix}kernel_size must be an odd integer >= 1 (3 or 5 in the papers), got {kernel_size!r}")
    for key, value in (("scale", scale), ("ridge", ridge), ("pos_scale", pos_scale)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
        if not ok:
            out.append(f"{prefix}{key} must be a finite number > 0, got {value!r}")
    if assign not in ASSIGNS:
        out.append(f"{prefix}assign={assign!r} is not one of: {', '.join(ASSIGNS)}")
    return out


def impulse_attention_(
    model: nn.Module,
    *,
    kernel_size: int = 3,
    scale: float = 0.5,
    assign: str = "layer",
    ridge: float = 3e-3,
    vo: bool = True,
    pos_scale: float = 1.0,
    generator: torch.Generator | None = None,
    pos_embed: torch.Tensor | None = None,
    grid: int | tuple[int, int] | None = None,
    solver: str = "auto",
) -> dict:
    """Impulse-initialise, in place, every self-attention layer of ``model`` (see the module docstring).

    The table is the model's fixed ``pos_embed`` (a timm-style ViT), or ``pos_embed`` (the patch tokens' rows,
    row-major, (N, d) or (1, N, d)) with its ``grid`` for any other model the adapters recognise, e.g. an
    ``nn.TransformerEncoder`` fed ``x + P``. ``solver`` factorises mimetic's VO (with ``vo``), as in
    :func:`mimetic.init.mimetic_attention_`. Returns a JSON-ready report: per layer and head the offset, the
    rank of its QK product and the step-0 attention measured through the module (:func:`position_attention`).
    Raises :class:`InitError` before writing anything when a precondition fails.
    """
    return _impulse_attention(model, kernel_size, scale, assign, ridge, vo, pos_scale, generator, pos_embed, grid,
                              solver)[0]


def _impulse_attention(model: nn.Module, kernel_size: int, scale: float, assign: str, ridge: float, vo: bool,
                       pos_scale: float, generator: torch.Generator | None, pos_embed: torch.Tensor | None,
                       grid: int | tuple[int, int] | None, solver: str) -> tuple[dict, list[AttentionAdapter]]:
    """:func:`impulse_attention_`, also returning the attention layers it wrote."""
    problems = _check_options(kernel_size, scale, assign, ridge, pos_scale)
    problems += [p for p in [solver_problem(solver)] if p]
    if problems:
        raise InitError("; ".join(problems))
    if pos_embed is not None:
        if grid is None:
            raise InitError("pos_embed= needs grid=(H, W), the token grid its rows are laid out on (row-major)")
        if pos_scale != 1:
            raise InitError("pos_scale applies to a model's own pos_embed; scale the table you pass yourself")
        table = _table_from_arguments(pos_embed, grid)
    else:
        table = find_position_table(model)
    if kernel_size > table.grid[0]:
        raise InitError(f"kernel_size={kernel_size} is larger than the {table.grid[0]}x{table.grid[1]} token grid")
    layers = attention_layers_or_raise(model)
    d = table.patches.shape[-1]
    refused = []
    for layer in layers:
        if layer.query_dim != d or layer.key_dim != d:
            refused.append(f"{layer.name}: its queries/keys take width {layer.query_dim}/{layer.key_dim}, the "
                           f"position table has width {d}")
        elif layer.causal:
            refused.append(f"{layer.name}: causal attention cannot attend to every offset of a 2-D window")
    if refused:
        lines = "\n".join(f"  - {r}" for r in refused)
        raise InitError(f"init=impulse cannot be applied; nothing was changed:\n{lines}")

    basis = TableBasis.of(table.patches)
    offsets = offset_order(kernel_size)
    plans: list[tuple[AttentionAdapter, list[HeadSolution]]] = []
    for li, layer in enumerate(layers):  # solve everything before the first write
        heads = []
        for h in range(layer.num_heads):
            if assign == "layer":
                offset = offsets[h % len(offsets)]
            elif assign == "network":
                offset = offsets[(li * layer.num_heads + h) % len(offsets)]
            else:
                offset = offsets[int(torch.randint(len(offsets), (1,), generator=generator).item())]
            heads.append(solve_head(basis, table.grid, offset, layer.head_dim, scale=float(scale),
                                    ridge=float(ridge), logit_scale=layer.scale, generator=generator))
        plans.append((layer, heads))

    with torch.no_grad():
        for layer, heads in plans:
            q, k, hd = layer.q_weight(), layer.k_weight(), layer.head_dim
            for h, sol in enumerate(heads):
                q[h * hd:(h + 1) * hd].copy_(sol.q.to(q.device, q.dtype))
                k[h * hd:(h + 1) * hd].copy_(sol.k.to(k.device, k.dtype))
        if vo:  # mimetic's VO, 0.4 Z - 0.4 I, as their NeurIPS code
            alpha, beta = PAPER_COEFFICIENTS.alpha_vo, -PAPER_COEFFICIENTS.beta_vo
            write_layers_(layers, solver, lambda layer: reference_vo_(layer, alpha, beta, generator),
                          lambda layer: [mimetic_vo_job(layer, alpha, beta, generator, vo_solver(layer, solver))])
        if pos_scale != 1 and table.full is not None:
            table.full.mul_(float(pos_scale))

    report_layers = []
    for layer, heads in plans:
        measured = position_attention(layer, basis, table.grid)
        report_layers.append({
            "name": layer.name,
            "heads": [{"offset": list(sol.offset), "rank": sol.rank, "argmax_rate_solved": sol.argmax_ok,
                       "target_mass": m["target_mass"], "argmax_rate": m["argmax_rate"],
                       "measured_offset": m["offset"]} for sol, m in zip(heads, measured)],
        })
    masses = [hd["target_mass"] for lay in report_layers for hd in lay["heads"]]
    return ({"table": table.source, "grid": list(table.grid), "table_rank": int(basis.s.numel()),
             "layers": report_layers, "mean_target_mass": sum(masses) / len(masses)}, layers)


def impulse_diagnostics(model: nn.Module, pos_embed: torch.Tensor | None = None,
                        grid: int | tuple[int, int] | None = None, *,
                        layers: list[AttentionAdapter] | None = None) -> dict:
    """Step 0, measured through every layer's forward over ``LN(P)``: each head's impulse (offset, mass on it).

    JSON-ready; works after any init (the heads of a default or mimetic init come out as weak impulses).
    ``layers``: the model's attention layers when already scanned (e.g. what the init wrote).
    """
    table = _table_from_arguments(pos_embed, grid) if pos_embed is not None else find_position_table(model)
    basis = TableBasis.of(table.patches)
    layers = attention_layers_or_raise(model) if layers is None else layers
    per_layer = [{"name": layer.name, "heads": position_attention(layer, basis, table.grid)} for layer in layers]
    masses = [h["target_mass"] for lay in per_layer for h in lay["heads"]]
    rates = [h["argmax_rate"] for lay in per_layer for h in lay["heads"]]
    return {"grid": list(table.grid), "layers": per_layer, "mean_target_mass": sum(masses) / len(masses),
            "mean_argmax_rate": sum(rates) / len(rates)}


@dataclass
class ImpulseOptions(Option):
    """``init=impulse``: each head's step-0 attention, from the fixed 2-D position embeddings alone, is an
    impulse at one offset of a ``kernel_size`` window (Zheng, Li, Lucey 2024/2025). ``scale``: mean logit
    margin of the offset neighbour over the best other token (default 0.5, chosen on validation: ~0.16 of the
    attention on it from P alone, 10x uniform; 4: ~0.95, a sharp impulse that trained poorly here);
    ``assign``: layer (their NeurIPS code: head h of every layer takes offset h) | network (offsets continue
    across layers) | random; ``ridge``: regularisation of the least-squares solve; ``vo``: mimetic's VO
    (0.4 Z - 0.4 I) as their NeurIPS code, or the model's init; ``pos_scale``: multiplies the fixed table
    (their "norm_p"; 1 = untouched). Needs ``model.pos_embed=sincos`` and a square grid."""

    touches_attention: ClassVar[bool] = True
    kernel_size: int = 3
    scale: float = 0.5
    assign: str = "layer"
    ridge: float = 3e-3
    vo: bool = True
    pos_scale: float = 1.0

    def problems(self, group: str) -> list[str]:
        out = _check_options(self.kernel_size, self.scale, self.assign, self.ridge, self.pos_scale, f"{group}.")
        if not isinstance(self.vo, bool):
            out.append(f"{group}.vo must be true or false, got {self.vo!r}")
        return out

    def diagnostics(self, model: nn.Module, layers: list[AttentionAdapter] | None = None) -> dict:
        """Extra step-0 diagnostics for :func:`mimetic.init.diagnose_init`: the impulses, measured (``layers``:
        the attention layers, when already scanned)."""
        return {"impulse": impulse_diagnostics(model, layers=layers)}


@INITS.register("impulse", ImpulseOptions,
                help="structured/impulse init: each head attends to one offset of a k x k window at step 0")
def _impulse(model: nn.Module, options: ImpulseOptions, generator: torch.Generator | None) -> dict:
    report, layers = _impulse_attention(model, int(options.kernel_size), float(options.scale), options.assign,
                                        float(options.ridge), bool(options.vo), float(options.pos_scale), generator,
                                        None, None, "auto")
    per_layer = report.pop("layers")
    return {"init": options.name, "layers": len(per_layer), "kernel_size": int(options.kernel_size),
            "scale": float(options.scale), "assign": options.assign, "ridge": float(options.ridge),
            "vo": bool(options.vo), "pos_scale": float(options.pos_scale), **report, "per_layer": per_layer,
            SCANNED: layers}

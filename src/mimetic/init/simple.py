"""Two controls for mimetic init (issue 22): the first author's simplest version, and a structure-free VO.

``init=mimetic_simple`` / :func:`mimetic_simple_` -- what the first author describes as the simplest
version of the method (SPEC §6: "sets W_k = W_q after a random init, and W_v = -W_proj (transpose
convention as the layer needs)" with "a small constant factor"). After the model's own random init, in
every attention layer:

* ``W_k <- W_q`` (row block for row block, so head by head): each head's QK product
  ``W_q^i^T W_k^i = W_q^i^T W_q^i`` is positive semi-definite, identity-like on average;
* ``W_v <- -c W_o^T``: with ``nn.Linear``'s (out, in) layout the value path is ``x W_v^T W_o^T``, so
  the VO product is ``W_v^T W_o^T = -c W_o W_o^T``: ``-c`` times a PSD matrix (identity-like, negative).

Only the key rows and value rows are written (a fused ``qkv`` keeps its query rows; ``W_o``/``proj``,
``W_q`` and every bias keep their values). Under timm's init the matched ``c`` is ~16 (``W_v`` ~16x the
size of ``W_o``); ``balanced=true`` splits it evenly instead (``W_o <- sqrt(c) W_o``,
``W_v <- -sqrt(c) W_o^T`` with the original ``W_o``: the same product, ``proj`` written too). A layer whose
keys or values cannot be copies of its queries / transposed output projection (different shapes:
``kdim``/``vdim`` differing from the width, grouped-query attention, ...) is refused with
:class:`InitError` and nothing is written.

``c`` (``init.c``): a number (default 16, chosen on a validation split: experiment tune_mimetic_simple_c,
val acc 44.8 / 46.4 / 45.2 / 47.4 / 36.8 for null / 1 / 4 / 16 / 64 on vit_micro, one seed, 500 images: only
64 is clearly worse), or null: per layer ``c = beta_vo * d_out / ||W_o||_F^2``, i.e. the VO product's mean
diagonal equals mimetic's ``-beta_vo`` (``-0.4``, the paper's). Why not ``c = 1``: the author's constant is
not stated, and
``c = 1`` makes the product's size a property of the model's init scheme (mean diagonal ``-1/3`` under
PyTorch's default Linear init, ``-0.077`` under timm's ViT init, std 0.02 at d = 192), so a comparison
with mimetic would mostly compare scales. Note the top eigenvalue of ``c W_o W_o^T`` is about 4x its mean
for a square ``W_o`` with i.i.d. entries (Marchenko-Pastur), so the matched product reaches ~ -1.6 along
some directions, while the eigenvalues of mimetic's ``0.4 Z - 0.4 I`` lie in the disc of radius 0.4 around
-0.4: perhaps the "optimization difficulties" the author mentions; a smaller ``init.c`` is the knob.
The QK part keeps the model's scale (the author's recipe): with timm's std-0.02 init the QK diagonal is
``head_dim * 4e-4`` (~0.026 at head_dim 64), far below mimetic's ~0.4.

``init=vo_nonzero`` / :func:`vo_nonzero_` -- the control that asks whether mimetic's VO gain comes from
the ``-I`` structure or from a non-zero, well-conditioned value path of the same size (SPEC §6: the
speedrun's plain non-zero V/O init). Per layer, from the same draw as mimetic's VO target
``M = alpha_vo Z - beta_vo I`` (the same generator stream: with equal seeds ``vo_nonzero`` and
``mimetic_vo`` use the same ``Z`` in every layer):

* ``form=rotated`` (default): ``B = M Q`` with ``Q`` a Haar-random orthogonal matrix. Same singular values
  as ``M`` (so the same Frobenius and spectral norm, the same conditioning), but no alignment with the
  identity: ``E[diag B] = 0`` (measured mean diagonal ~1e-3 against mimetic's -0.4).
* ``form=gaussian``: ``B = Z ||M||_F / ||Z||_F``: an i.i.d. Gaussian product with exactly ``M``'s
  Frobenius norm (its spectrum is Marchenko-Pastur-like, with small singular values ``M`` does not have).

``B`` is split into ``W_v^T = U S^1/2``, ``W_o^T = S^1/2 V^T`` by the same balanced factorisation mimetic
uses (:mod:`mimetic.init.factorize`, or a faster :mod:`mimetic.init.solvers` one). Queries and keys keep the model's
init. ``Q`` comes from a private generator seeded from the caller's generator *state* (SHA-256 of it, read
once at the start), so it is reproducible but does not shift the caller's stream.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from mimetic.init.attention import (
    PAPER_COEFFICIENTS,
    _CoefficientOptions,
    attention_layers_or_raise,
    coefficient_problems,
    vo_job,
    vo_solver,
    write_layers_,
)
from mimetic.init.base import INITS, SCANNED, InitError
from mimetic.init.factorize import balanced_factors, identity_plus_noise
from mimetic.init.layers import AttentionAdapter
from mimetic.init.solvers import draw_targets, solver_problem
from mimetic.registry import Option

VO_FORMS = ("rotated", "gaussian")


# ----------------------------------------------------------------------------- mimetic_simple
def _c_problems(c: Any, key: str = "c") -> list[str]:
    if c is None:
        return []
    ok = isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) and c > 0
    return [] if ok else [f"{key} must be a finite number > 0 (or null: match mimetic's VO diagonal "
                          f"-{PAPER_COEFFICIENTS.beta_vo}), got {c!r}"]


def _simple_layer_problem(layer: AttentionAdapter) -> str | None:
    q, k, v, o = layer.q_weight(), layer.k_weight(), layer.v_weight(), layer.o_weight()
    if q.shape != k.shape:
        return (f"W_k = W_q needs keys shaped like queries; query weight {tuple(q.shape)} vs key weight "
                f"{tuple(k.shape)} (keys from another width, e.g. nn.MultiheadAttention(kdim=...), or grouped-query "
                "attention)")
    if tuple(v.shape) != tuple(o.T.shape):
        return (f"W_v = -c W_o^T needs a value weight shaped like the transposed output projection; value weight "
                f"{tuple(v.shape)} vs W_o^T {tuple(o.T.shape)} (values from another width, e.g. vdim=...)")
    if not torch.isfinite(o).all() or not bool((o != 0).any()):
        return "its output projection is all zeros (or not finite): W_v = -c W_o^T would zero the value path"
    return None


def mimetic_simple_(model: nn.Module, *, c: float | None = 16.0, balanced: bool = False,
                    generator: torch.Generator | None = None) -> list[dict]:
    """The first author's simplest mimetic init, in place: ``W_k <- W_q`` and ``W_v <- -c W_o^T`` per layer.

    ``c`` defaults to 16 (chosen on validation for vit_micro); ``c=None`` picks, per layer,
    ``c = beta_vo d_out / ||W_o||_F^2`` so that the VO product's mean diagonal
    is mimetic's ``-0.4``. ``balanced=True`` writes ``W_o <- sqrt(c) W_o`` and ``W_v <- -sqrt(c) W_o^T`` (the
    original ``W_o``): the same VO product with factors of equal size (as mimetic's balanced split), at the
    price of also writing the output projection. Returns one dict per layer (name, the ``c`` used, the QK
    and VO mean diagonals).
    ``generator`` is accepted for a uniform signature and not used (nothing is drawn). Raises
    :class:`InitError` before writing anything for a bad ``c``, a model without (supported) attention, or
    a layer whose key/value shapes differ from its query/output shapes.
    """
    del generator
    problems = _c_problems(c)
    if problems:
        raise InitError("; ".join(problems))
    return _mimetic_simple(attention_layers_or_raise(model), c, balanced)


def _mimetic_simple(layers: list[AttentionAdapter], c: float | None, balanced: bool) -> list[dict]:
    refused = [(layer.name, why) for layer in layers if (why := _simple_layer_problem(layer)) is not None]
    if refused:
        lines = "\n".join(f"  - {name}: {why}" for name, why in refused)
        raise InitError(f"init=mimetic_simple cannot be applied; nothing was changed:\n{lines}")
    out = []
    with torch.no_grad():
        plans = []
        for layer in layers:
            o = layer.o_weight().detach().to(torch.float64)
            c_layer = float(c) if c is not None else PAPER_COEFFICIENTS.beta_vo * o.shape[0] / o.pow(2).sum().item()
            plans.append((layer, c_layer))
        for layer, c_layer in plans:  # everything checked and computed before the first write
            q, k, v, o = layer.q_weight(), layer.k_weight(), layer.v_weight(), layer.o_weight()
            k.copy_(q.detach().clone())
            if balanced:
                root = math.sqrt(c_layer)
                original = o.detach().clone()
                o.mul_(root)
                v.copy_(original.T * (-root))
            else:
                v.copy_(o.detach().T * (-c_layer))
            qd = q.detach().to(torch.float64)
            hd = layer.head_dim
            qk_diag = sum(qd[h * hd:(h + 1) * hd].pow(2).sum().item() for h in range(layer.num_heads))
            out.append({"name": layer.name, "c": c_layer,
                        "qk_diag_mean": qk_diag / (layer.num_heads * q.shape[1]),
                        # trace(W_v^T W_o^T) / d_out
                        "vo_diag_mean": (v.detach().to(torch.float64) * o.detach().to(torch.float64).T).sum().item()
                        / o.shape[0]})
    return out


@dataclass
class MimeticSimpleOptions(Option):
    """``init=mimetic_simple``: the first author's simplest version (SPEC §6): after the model's random init,
    ``W_k = W_q`` (per head: a PSD QK product) and ``W_v = -c W_o^T`` (VO product ``-c W_o W_o^T``).
    ``c``: a number (default 16: chosen on a validation split, experiment tune_mimetic_simple_c), or null:
    per layer the ``c`` that gives the VO product mean diagonal -0.4, mimetic's (``c = 1`` would tie the
    product's size to the model's init scheme: -1/3 under PyTorch's Linear init, -0.077 under timm's ViT
    init at d = 192)."""

    touches_attention: ClassVar[bool] = True
    c: float | None = 16.0
    balanced: bool = False  # true: W_o <- sqrt(c) W_o, W_v <- -sqrt(c) W_o^T (same product, equal-size factors)

    def problems(self, group: str) -> list[str]:
        out = _c_problems(self.c, f"{group}.c")
        if not isinstance(self.balanced, bool):
            out.append(f"{group}.balanced must be true or false, got {self.balanced!r}")
        return out


@INITS.register("mimetic_simple", MimeticSimpleOptions,
                help="the author's simplest version: W_k = W_q, W_v = -c W_o^T after the random init")
def _mimetic_simple_init(model: nn.Module, options: MimeticSimpleOptions, generator: torch.Generator | None) -> dict:
    layers = attention_layers_or_raise(model)
    per_layer = _mimetic_simple(layers, options.c, options.balanced)
    return {"init": options.name, "layers": len(per_layer), "c": options.c, "balanced": options.balanced,
            "per_layer": per_layer, SCANNED: layers}


# ----------------------------------------------------------------------------- vo_nonzero
def _side_generator(generator: torch.Generator | None) -> torch.Generator:
    """A CPU generator seeded from ``generator``'s current state (the global one if None), which it leaves alone."""
    state = generator.get_state() if generator is not None else torch.get_rng_state()
    seed = int.from_bytes(hashlib.sha256(state.cpu().numpy().tobytes() + b"vo_nonzero").digest()[:8], "little")
    return torch.Generator().manual_seed(seed & ((1 << 63) - 1))


def haar_orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-distributed (n x n) orthogonal matrix, float64: QR of a Gaussian with the signs of R's diagonal."""
    g = torch.randn(n, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    sign = torch.sign(torch.diagonal(r))
    return q * torch.where(sign == 0, torch.ones_like(sign), sign)


def vo_nonzero_(model: nn.Module, *, form: str = "rotated", alpha_vo: float = PAPER_COEFFICIENTS.alpha_vo,
                beta_vo: float = PAPER_COEFFICIENTS.beta_vo, generator: torch.Generator | None = None,
                solver: str = "auto") -> list[dict]:
    """Set every layer's VO product to a structure-free matrix of mimetic's size (see the module docstring).

    ``form``: ``"rotated"`` (``B = (alpha_vo Z - beta_vo I) Q``, ``Q`` Haar orthogonal) or ``"gaussian"``
    (``B = Z ||alpha_vo Z - beta_vo I||_F / ||Z||_F``). ``Z`` is drawn from ``generator`` exactly as
    mimetic's VO target is, and ``B`` is factorised by ``solver`` as mimetic's would be
    (:func:`mimetic.init.mimetic_attention_`). Queries and keys are untouched. Returns one dict per layer
    (name, the Frobenius norms of ``B`` and of mimetic's target, ``B``'s mean diagonal). Raises
    :class:`InitError` before writing anything for a bad coefficient, form or solver, or attention the
    adapters cannot handle.
    """
    problems = coefficient_problems(dict(alpha_vo=alpha_vo, beta_vo=beta_vo))
    if form not in VO_FORMS:
        problems.append(f"form must be one of: {', '.join(VO_FORMS)}, got {form!r}")
    problems += [p for p in [solver_problem(solver)] if p]
    if problems:
        raise InitError("; ".join(problems))
    return _vo_nonzero(attention_layers_or_raise(model), form, alpha_vo, -beta_vo, generator, solver)


def _vo_nonzero(layers: list[AttentionAdapter], form: str, alpha: float, beta: float,
                generator: torch.Generator | None, solver: str) -> list[dict]:
    side = _side_generator(generator)
    record: list[dict] = []

    def target(layer: AttentionAdapter, z: torch.Tensor) -> torch.Tensor:
        """Mimetic's VO target ``alpha Z + beta I`` made structure-free (the module docstring's two forms)."""
        mimetic = alpha * z + beta * torch.eye(*z.shape, dtype=torch.float64, device=z.device)
        if form == "rotated":
            b = mimetic @ haar_orthogonal(z.shape[1], side).to(z.device)
        else:
            b = z * (torch.linalg.norm(mimetic) / torch.linalg.norm(z))
        record.append({"name": layer.name, "fro_norm": torch.linalg.norm(b).item(),
                       "mimetic_fro_norm": torch.linalg.norm(mimetic).item(),
                       "target_diag_mean": torch.diagonal(b).mean().item()})
        return b

    def reference(layer: AttentionAdapter) -> None:
        # alpha=1, beta=0: Z / sqrt(d) from exactly the numbers mimetic's VO target draws.
        z = identity_plus_noise(layer.value_dim, layer.out_dim, alpha=1.0, beta=0.0, noise_dim=layer.query_dim,
                                generator=generator)
        left, right = balanced_factors(target(layer, z), layer.attn_dim, generator=generator)
        layer.v_weight().copy_(left.T)
        layer.o_weight().copy_(right.T)

    def jobs(layer: AttentionAdapter):
        def draw():
            zs, spares = draw_targets(1, layer.value_dim, layer.out_dim, layer.attn_dim, alpha=1.0, beta=0.0,
                                      noise_dim=layer.query_dim, generator=generator, device=layer.v_weight().device)
            return target(layer, zs[0]), None if spares is None else spares[0]

        yield vo_job(layer, draw, vo_solver(layer, solver))

    write_layers_(layers, solver, reference, jobs)
    return record


@dataclass
class VONonzeroOptions(_CoefficientOptions):
    """``init=vo_nonzero``: the control for mimetic's VO part. Per layer a value-output product with the
    singular values (form=rotated: ``(alpha_vo Z - beta_vo I) Q``, ``Q`` Haar orthogonal) or the Frobenius
    norm (form=gaussian: a rescaled ``Z``) of mimetic's VO target, but no identity structure (mean diagonal
    ~0); ``Z`` is the one mimetic_vo draws with the same seed. Queries and keys keep the model's init."""

    qk: ClassVar[bool] = False
    form: str = "rotated"
    alpha_vo: float = PAPER_COEFFICIENTS.alpha_vo
    beta_vo: float = PAPER_COEFFICIENTS.beta_vo

    def problems(self, group: str) -> list[str]:
        out = super().problems(group)
        if self.form not in VO_FORMS:
            out.append(f"{group}.form={self.form!r} is not one of: {', '.join(VO_FORMS)}")
        return out


@INITS.register("vo_nonzero", VONonzeroOptions,
                help="control: a VO product of mimetic's size (same singular values) without the -I structure")
def _vo_nonzero_init(model: nn.Module, options: VONonzeroOptions, generator: torch.Generator | None) -> dict:
    layers = attention_layers_or_raise(model)
    per_layer = _vo_nonzero(layers, options.form, float(options.alpha_vo), -float(options.beta_vo), generator,
                            options.solver)
    return {"init": options.name, "layers": len(per_layer), "form": options.form, "alpha_vo": float(options.alpha_vo),
            "beta_vo": float(options.beta_vo), "solver": options.solver, "per_layer": per_layer, SCANNED: layers}

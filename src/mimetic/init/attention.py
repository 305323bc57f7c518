"""Mimetic initialization of self-attention (Trockman & Kolter, ICML 2023).

For every attention layer, with ``d`` the model width and ``k`` the head dim:

* QK, per head ``i``: ``W_q^i^T W_k^i = best rank-k approx of (alpha_qk Z_i + beta_qk I)``,
  a fresh ``Z_i`` per head and per layer;
* VO, per layer: ``W_v^T W_o^T = alpha_vo Z - beta_vo I``.

The signs of the identity terms are the vision ones by default (``sign_qk=+1``, ``sign_vo=-1``:
the ViT pattern the paper mimics). Pre-trained language models are reported to show a different
sign pattern, so both are options (``init.sign_qk``, ``init.sign_vo``, each +1 or -1): the targets
are ``alpha_qk Z + sign_qk beta_qk I`` and ``alpha_vo Z + sign_vo beta_vo I``.

(``nn.Linear`` computes ``x W^T``, so these are the products the forward pass applies:
logits ``x W_q^T W_k x'^T`` and value path ``x W_v^T W_o^T``.) Biases, and every other
tensor of the model, are left as they are.

The paper's coefficients live once, in :data:`PAPER_COEFFICIENTS`; the registered inits
``mimetic``, ``mimetic_qk`` and ``mimetic_vo`` and :func:`mimetic_attention_` all default to it.

Two ways to the same weights: :func:`reference_qk_` and :func:`reference_vo_` are the method as written
above, with the reference math of :mod:`mimetic.init.factorize` (the ``"svd"`` solver, and so ``"auto"`` on
every layer up to width 512); wider layers, or another ``solver=``, run the same draws as jobs that
:mod:`mimetic.init.solvers` factorises faster (on every core, or batched on an accelerator).
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn

from mimetic.init.base import INITS, SCANNED, InitError
from mimetic.init.factorize import balanced_factors, identity_plus_noise
from mimetic.init.layers import AttentionAdapter, scan_attention, supported_layers_text
from mimetic.init.solvers import FactorJob, draw_targets, resolve_solver, run_jobs, solver_names, solver_problem
from mimetic.registry import Option


@dataclass(frozen=True)
class MimeticCoefficients:
    """QK target ``alpha_qk Z + beta_qk I``, VO target ``alpha_vo Z - beta_vo I`` (signs fixed)."""

    alpha_qk: float = 0.7
    beta_qk: float = 0.7
    alpha_vo: float = 0.4
    beta_vo: float = 0.4


#: The paper's values (SPEC §1): the one place they are written.
PAPER_COEFFICIENTS = MimeticCoefficients()


def coefficient_problems(values: Mapping[str, Any], prefix: str = "") -> list[str]:
    """One message per coefficient that is not a finite number >= 0 (``prefix`` names the group)."""
    out = []
    for name, value in values.items():
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
        if not ok:
            out.append(
                f"{prefix}{name} must be a finite number >= 0, got {value!r} "
                "(the sign of each target is set by init.sign_qk / init.sign_vo: +I for QK, -I for VO by default)"
            )
    return out


def sign_problems(values: Mapping[str, Any], prefix: str = "") -> list[str]:
    """One message per identity-term sign that is not +1 or -1."""
    return [f"{prefix}{name} must be 1 or -1 (the sign of the identity term of its target), got {value!r}"
            for name, value in values.items() if isinstance(value, bool) or value not in (1, -1)]


@dataclass
class _CoefficientOptions(Option):
    """Shared checks of the mimetic schemas: every ``alpha_*``/``beta_*`` field is a finite number >= 0."""

    touches_attention: ClassVar[bool] = True
    qk: ClassVar[bool] = True
    vo: ClassVar[bool] = True
    # How alpha Z + beta I is factorised (mimetic.init.solvers): "svd" is the float64 CPU reference
    # (mimetic.init.factorize); "eigh" is exact (~1e-13), one head per core on the CPU, batched on an accelerator;
    # "mixed" is eigh with a float32 eigensolver refined in float64 (products within ~1e-6); "auto" (the
    # default) is "svd" up to width 512 and "mixed" above; "randomized" is an approximate opt-in for
    # very wide models (README "Speed").
    solver: str = "auto"

    def coefficients(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name.startswith(("alpha_", "beta_"))}

    def signs(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name.startswith("sign_")}

    def problems(self, group: str) -> list[str]:
        out = coefficient_problems(self.coefficients(), prefix=f"{group}.") + sign_problems(self.signs(), f"{group}.")
        if solver_problem(self.solver):
            out.append(f"{group}.solver={self.solver!r} is not one of: {', '.join(solver_names())}")
        return out


@dataclass
class MimeticOptions(_CoefficientOptions):
    """``init=mimetic``: both products (the paper's method)."""

    alpha_qk: float = PAPER_COEFFICIENTS.alpha_qk
    beta_qk: float = PAPER_COEFFICIENTS.beta_qk
    alpha_vo: float = PAPER_COEFFICIENTS.alpha_vo
    beta_vo: float = PAPER_COEFFICIENTS.beta_vo
    sign_qk: int = 1  # QK target alpha_qk Z + sign_qk beta_qk I (vision: +1)
    sign_vo: int = -1  # VO target alpha_vo Z + sign_vo beta_vo I (vision: -1)


@dataclass
class MimeticQKOptions(_CoefficientOptions):
    """``init=mimetic_qk``: the query-key product only (ablation); the value path keeps its init."""

    vo: ClassVar[bool] = False
    alpha_qk: float = PAPER_COEFFICIENTS.alpha_qk
    beta_qk: float = PAPER_COEFFICIENTS.beta_qk
    sign_qk: int = 1


@dataclass
class MimeticVOOptions(_CoefficientOptions):
    """``init=mimetic_vo``: the value-output product only (ablation); queries and keys keep their init."""

    qk: ClassVar[bool] = False
    alpha_vo: float = PAPER_COEFFICIENTS.alpha_vo
    beta_vo: float = PAPER_COEFFICIENTS.beta_vo
    sign_vo: int = -1



def attention_layers_or_raise(model: nn.Module) -> list[AttentionAdapter]:
    """The attention layers of ``model``, all of them supported, or an :class:`InitError` saying why not.

    Refused layers (a variant whose products are not the targeted ones, meta tensors, bad
    shapes) and attention-like modules no adapter recognises are listed together; nothing
    is skipped silently.
    """
    scan = scan_attention(model)
    scan.raise_if_problems()
    if not scan.layers:
        raise InitError(
            f"{type(model).__name__} has no recognised self-attention layer, so an attention init has "
            f"nothing to set (use init=default for a model without attention). Supported: {supported_layers_text()}."
        )
    return scan.layers


# ----------------------------------------------------------------------------- the reference: the method itself
def reference_qk_(layer: AttentionAdapter, alpha: float, beta: float, generator: torch.Generator | None) -> None:
    """Per head ``i``: ``W_q^i^T W_k^i`` = the best rank-``head_dim`` approximation of ``alpha Z_i + beta I``,
    written as ``(W_q^i)^T = U S^1/2`` and ``W_k^i = S^1/2 V^T``."""
    q, k, hd = layer.q_weight(), layer.k_weight(), layer.head_dim
    for head in range(layer.num_heads):
        target = identity_plus_noise(layer.query_dim, layer.key_dim, alpha=alpha, beta=beta, generator=generator)
        left, right = balanced_factors(target, hd, generator=generator)
        q[head * hd:(head + 1) * hd].copy_(left.T)
        k[head * hd:(head + 1) * hd].copy_(right)


def reference_vo_(layer: AttentionAdapter, alpha: float, beta: float, generator: torch.Generator | None) -> None:
    """Per layer: ``W_v^T W_o^T = alpha Z + beta I`` (``beta`` carries the sign of I), written as
    ``W_v^T = U S^1/2`` and ``W_o^T = S^1/2 V^T``; ``Z`` has variance 1/d, d the query width."""
    target = identity_plus_noise(layer.value_dim, layer.out_dim, alpha=alpha, beta=beta, noise_dim=layer.query_dim,
                                 generator=generator)
    left, right = balanced_factors(target, layer.attn_dim, generator=generator)
    layer.v_weight().copy_(left.T)
    layer.o_weight().copy_(right.T)


# ----------------------------------------------------------------------------- the same, at scale
def layer_solver(layer: AttentionAdapter, solver: str) -> str:
    """``solver`` made concrete for this layer ("auto" looks at its widest side), the same for QK and VO."""
    return resolve_solver(solver, max(layer.query_dim, layer.key_dim, layer.value_dim, layer.out_dim))


def vo_solver(layer: AttentionAdapter, solver: str) -> str:
    """The concrete solver of the layer's VO product: one full-rank target, which ``"randomized"`` has nothing to
    truncate in, so that solver leaves it to the exact ``"eigh"``."""
    concrete = layer_solver(layer, solver)
    return "eigh" if concrete == "randomized" else concrete


def qk_jobs(layer: AttentionAdapter, alpha: float, beta: float, generator: torch.Generator | None,
            solver: str) -> Iterator[FactorJob]:
    """:func:`reference_qk_` as one job per head, factorised by ``solver`` (concrete) on the weights' device."""
    q, k = layer.q_weight(), layer.k_weight()
    hd, m, n = layer.head_dim, layer.query_dim, layer.key_dim

    def draw():
        targets, spares = draw_targets(1, m, n, hd, alpha=alpha, beta=beta, noise_dim=m, generator=generator,
                                       device=q.device)
        return targets[0], None if spares is None else spares[0]

    def write(head: int, left: torch.Tensor, right: torch.Tensor) -> None:
        q[head * hd:(head + 1) * hd].copy_(left.T)
        k[head * hd:(head + 1) * hd].copy_(right)

    for head in range(layer.num_heads):
        yield FactorJob(m, n, hd, solver, q.device, draw, functools.partial(write, head))


def vo_job(layer: AttentionAdapter, draw: Callable[[], tuple[torch.Tensor, torch.Tensor | None]],
           solver: str) -> FactorJob:
    """The layer's value path as one job: ``draw()`` gives its target (and spares), factorised by ``solver``
    (concrete) into ``W_v^T = U S^1/2`` and ``W_o^T = S^1/2 V^T``."""
    device = layer.v_weight().device

    def write(left: torch.Tensor, right: torch.Tensor) -> None:
        layer.v_weight().copy_(left.T)
        layer.o_weight().copy_(right.T)

    return FactorJob(layer.value_dim, layer.out_dim, layer.attn_dim, solver, device, draw, write)


def mimetic_vo_job(layer: AttentionAdapter, alpha: float, beta: float, generator: torch.Generator | None,
                   solver: str) -> FactorJob:
    """:func:`reference_vo_` as one job, factorised by ``solver`` (concrete) on the weights' device."""
    def draw():
        targets, spares = draw_targets(1, layer.value_dim, layer.out_dim, layer.attn_dim, alpha=alpha, beta=beta,
                                       noise_dim=layer.query_dim, generator=generator, device=layer.v_weight().device)
        return targets[0], None if spares is None else spares[0]

    return vo_job(layer, draw, solver)


def write_layers_(layers: Iterable[AttentionAdapter], solver: str,
                  reference: Callable[[AttentionAdapter], None],
                  jobs: Callable[[AttentionAdapter], Iterable[FactorJob]]) -> None:
    """Write ``layers`` in module order: those whose concrete solver is ``"svd"`` with ``reference(layer)``, the
    others through ``jobs(layer)`` (consecutive ones share one run: on the CPU, one pool over every core).

    Every target is drawn in the same order either way, so a seed gives the same noise whatever the solver.
    """
    with torch.no_grad():
        for is_reference, group in itertools.groupby(layers, key=lambda layer: layer_solver(layer, solver) == "svd"):
            if is_reference:
                for layer in group:
                    reference(layer)
            else:
                run_jobs(job for layer in group for job in jobs(layer))


def mimetic_attention_(
    model: nn.Module,
    *,
    alpha_qk: float = PAPER_COEFFICIENTS.alpha_qk,
    beta_qk: float = PAPER_COEFFICIENTS.beta_qk,
    alpha_vo: float = PAPER_COEFFICIENTS.alpha_vo,
    beta_vo: float = PAPER_COEFFICIENTS.beta_vo,
    qk: bool = True,
    vo: bool = True,
    generator: torch.Generator | None = None,
    sign_qk: int = 1,
    sign_vo: int = -1,
    solver: str = "auto",
) -> list[AttentionAdapter]:
    """Mimetic-initialise, in place, every self-attention layer of ``model``.

    ``sign_qk``/``sign_vo`` (each +1 or -1) are the signs of the identity terms: the targets are
    ``alpha_qk Z + sign_qk beta_qk I`` and ``alpha_vo Z + sign_vo beta_vo I`` (defaults: the vision signs).

    Returns the attention layers written (:class:`~mimetic.init.AttentionAdapter`, in module order;
    its ``len()`` is the layer count; empty when neither ``qk`` nor ``vo``): pass them on to
    :func:`~mimetic.init.diagnose_init` or :func:`~mimetic.init.attention_products` instead of
    scanning the model again. Noise is drawn from ``generator`` (torch's global RNG if None),
    layer by layer in module order, the heads' QK noise before the layer's VO noise; equal seeds
    therefore give identical weights.

    ``solver`` factorises the targets: ``"auto"`` (the float64 reference ``"svd"``,
    :mod:`mimetic.init.factorize`, for layers up to width 512; the faster ``"mixed"`` above: products
    within ~1e-6), or ``"svd"``, ``"eigh"`` (exact), ``"mixed"`` or ``"randomized"`` (approximate); see
    :mod:`mimetic.init.solvers` for their precision and cost. The noise is the same for every solver.

    Raises :class:`InitError` (a ``ValueError``), before writing anything, for a negative
    or non-finite alpha/beta, an unknown solver, a model without recognised attention, a layer
    whose width does not split into its heads, a layer whose forward does not compute the targeted
    products (qk-norm, talking heads, ...), meta-device parameters, or modules that look
    like attention but that no adapter recognises.
    """
    problems = coefficient_problems(dict(alpha_qk=alpha_qk, beta_qk=beta_qk, alpha_vo=alpha_vo, beta_vo=beta_vo))
    problems += sign_problems(dict(sign_qk=sign_qk, sign_vo=sign_vo))
    problems += [p for p in [solver_problem(solver)] if p]
    if problems:
        raise InitError("; ".join(problems))
    layers = attention_layers_or_raise(model)
    if not (qk or vo):
        return []
    beta_qk, beta_vo = sign_qk * beta_qk, sign_vo * beta_vo

    def reference(layer: AttentionAdapter) -> None:  # in the documented draw order: each head's QK, then VO
        if qk:
            reference_qk_(layer, alpha_qk, beta_qk, generator)
        if vo:
            reference_vo_(layer, alpha_vo, beta_vo, generator)

    def jobs(layer: AttentionAdapter) -> Iterator[FactorJob]:  # the same, in the same order
        if qk:
            yield from qk_jobs(layer, alpha_qk, beta_qk, generator, layer_solver(layer, solver))
        if vo:
            yield mimetic_vo_job(layer, alpha_vo, beta_vo, generator, vo_solver(layer, solver))

    write_layers_(layers, solver, reference, jobs)
    return layers


def solvers_used(layers: Iterable[AttentionAdapter], solver: str) -> str:
    """The concrete solvers ``solver`` meant for ``layers``, for the report (e.g. ``"svd"``, ``"mixed+svd"``)."""
    return "+".join(sorted({layer_solver(layer, solver) for layer in layers}))


def _mimetic(model: nn.Module, options: _CoefficientOptions, generator: torch.Generator | None) -> dict:
    coefficients = {k: float(v) for k, v in options.coefficients().items()}
    signs = {k: int(v) for k, v in options.signs().items()}
    layers = mimetic_attention_(model, qk=options.qk, vo=options.vo, generator=generator, solver=options.solver,
                                **coefficients, **signs)
    return {"init": options.name, "layers": len(layers), **coefficients, **signs, "solver": options.solver,
            "solver_used": solvers_used(layers, options.solver), SCANNED: layers}


INITS.add("mimetic", MimeticOptions, _mimetic,
          help="W_q^T W_k ~ alpha_qk Z + beta_qk I, W_v^T W_o^T ~ alpha_vo Z - beta_vo I")
INITS.add("mimetic_qk", MimeticQKOptions, _mimetic, help="only the query-key product of mimetic init")
INITS.add("mimetic_vo", MimeticVOOptions, _mimetic, help="only the value-output product of mimetic init")

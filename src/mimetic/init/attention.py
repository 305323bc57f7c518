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
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn

from mimetic.init import factor_jobs, factorize
from mimetic.init.base import INITS, InitError
from mimetic.init.layers import AttentionAdapter, scan_attention, supported_layers_text
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
    # How alpha Z + beta I is factorised (mimetic.init.factorize.SOLVERS): "svd" is the float64 CPU
    # reference; "eigh" is exact (~1e-13), one head per core on the CPU, batched on an accelerator;
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
        if self.solver not in factorize.SOLVERS:
            out.append(f"{group}.solver={self.solver!r} is not one of: {', '.join(factorize.SOLVERS)}")
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


def _layer_solver(layer: AttentionAdapter, solver: str) -> str:
    """``solver`` made concrete for this layer ("auto" looks at its widest side), the same for QK and VO."""
    return factorize.resolve_solver(solver, max(layer.query_dim, layer.key_dim, layer.value_dim, layer.out_dim))


def _qk_jobs(layer: AttentionAdapter, alpha: float, beta: float, generator: torch.Generator | None,
             solver: str) -> Iterator[factor_jobs.FactorJob]:
    """One job per head: ``(W_q^i)^T = U_k S_k^1/2`` and ``W_k^i = S_k^1/2 V_k^T`` of its own target."""
    q, k = layer.q_weight(), layer.k_weight()
    hd, m, n = layer.head_dim, layer.query_dim, layer.key_dim
    solver = _layer_solver(layer, solver)
    device = torch.device("cpu") if solver == "svd" else q.device

    def draw():
        targets, spares = factorize.draw_targets(1, m, n, hd, alpha=alpha, beta=beta, noise_dim=m,
                                                 generator=generator, device=device)
        return targets[0], None if spares is None else spares[0]

    def write(head: int, left: torch.Tensor, right: torch.Tensor) -> None:
        q[head * hd:(head + 1) * hd].copy_(left.T)
        k[head * hd:(head + 1) * hd].copy_(right)

    for head in range(layer.num_heads):
        yield factor_jobs.FactorJob(m, n, hd, solver, device, draw, functools.partial(write, head))


def _vo_job(layer: AttentionAdapter, alpha: float, beta: float, generator: torch.Generator | None,
            solver: str) -> factor_jobs.FactorJob:
    """The layer's value path: ``W_v^T = U S^1/2``, ``W_o^T = S^1/2 V^T`` (``beta`` carries the sign of I)."""
    m, n, inner = layer.value_dim, layer.out_dim, layer.attn_dim
    solver = _layer_solver(layer, solver)
    # One full-rank target per layer: the randomized solver has nothing to truncate, so it uses the exact "eigh".
    solver = "eigh" if solver == "randomized" else solver
    device = torch.device("cpu") if solver == "svd" else layer.v_weight().device

    def draw():
        targets, spares = factorize.draw_targets(1, m, n, inner, alpha=alpha, beta=beta, noise_dim=layer.query_dim,
                                                 generator=generator, device=device)
        return targets[0], None if spares is None else spares[0]

    def write(left: torch.Tensor, right: torch.Tensor) -> None:
        layer.v_weight().copy_(left.T)
        layer.o_weight().copy_(right.T)

    return factor_jobs.FactorJob(m, n, inner, solver, device, draw, write)


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
) -> int:
    """Mimetic-initialise, in place, every self-attention layer of ``model``.

    ``sign_qk``/``sign_vo`` (each +1 or -1) are the signs of the identity terms: the targets are
    ``alpha_qk Z + sign_qk beta_qk I`` and ``alpha_vo Z + sign_vo beta_vo I`` (defaults: the vision signs).

    Returns the number of layers initialised. Noise is drawn from ``generator`` (torch's
    global RNG if None), layer by layer in module order, the heads' QK noise before the
    layer's VO noise; equal seeds therefore give identical weights.

    Raises :class:`InitError` (a ``ValueError``), before writing anything, for a negative
    or non-finite alpha/beta, a model without recognised attention, a layer whose width
    does not split into its heads, a layer whose forward does not compute the targeted
    products (qk-norm, talking heads, ...), meta-device parameters, or modules that look
    like attention but that no adapter recognises.

    The factorisation runs with :func:`mimetic.init.factorize.current_solver`: ``"auto"`` (the float64
    reference ``"svd"`` for layers up to width 512, the faster ``"mixed"`` above: products within ~1e-6)
    unless a ``with factorize.factor_solver(name):`` block picks ``"svd"``, ``"eigh"`` (exact),
    ``"mixed"`` or ``"randomized"`` (approximate); see
    :mod:`mimetic.init.factorize` for their precision and cost.
    """
    problems = coefficient_problems(dict(alpha_qk=alpha_qk, beta_qk=beta_qk, alpha_vo=alpha_vo, beta_vo=beta_vo))
    problems += sign_problems(dict(sign_qk=sign_qk, sign_vo=sign_vo))
    if problems:
        raise InitError("; ".join(problems))
    layers = attention_layers_or_raise(model)
    solver = factorize.current_solver()  # "auto" unless factorize.factor_solver(...) is active

    def jobs() -> Iterator[factor_jobs.FactorJob]:  # in the documented draw order: each head's QK, then VO
        for layer in layers:
            if qk:
                yield from _qk_jobs(layer, alpha_qk, sign_qk * beta_qk, generator, solver)
            if vo:
                yield _vo_job(layer, alpha_vo, sign_vo * beta_vo, generator, solver)

    with torch.no_grad():
        factor_jobs.run_jobs(jobs())
    return len(layers) if (qk or vo) else 0


def _mimetic(model: nn.Module, options: _CoefficientOptions, generator: torch.Generator | None) -> dict:
    coefficients = {k: float(v) for k, v in options.coefficients().items()}
    signs = {k: int(v) for k, v in options.signs().items()}
    with factorize.factor_solver(options.solver):
        layers = mimetic_attention_(model, qk=options.qk, vo=options.vo, generator=generator, **coefficients, **signs)
    used = sorted({_layer_solver(layer, options.solver) for layer in attention_layers_or_raise(model)})
    return {"init": options.name, "layers": layers, **coefficients, **signs, "solver": options.solver,
            "solver_used": "+".join(used)}


INITS.add("mimetic", MimeticOptions, _mimetic,
          help="W_q^T W_k ~ alpha_qk Z + beta_qk I, W_v^T W_o^T ~ alpha_vo Z - beta_vo I")
INITS.add("mimetic_qk", MimeticQKOptions, _mimetic, help="only the query-key product of mimetic init")
INITS.add("mimetic_vo", MimeticVOOptions, _mimetic, help="only the value-output product of mimetic init")

"""Adapters for language-model attention layouts (GPT-2/nanoGPT, Llama-style, BERT-style).

Matched by structure, so no dependency on ``transformers``:

* :class:`FusedCAttnAttention`: ``c_attn`` (q, k, v fused, in that order) and ``c_proj``,
  either ``nn.Linear`` (nanoGPT) or Hugging Face's ``Conv1D``, whose weight is stored
  (in, out), the transpose of ``nn.Linear``'s; heads from ``num_heads``/``n_head``.
* :class:`SeparateProjAttention`: ``q_proj``/``k_proj``/``v_proj`` and ``o_proj`` (Llama,
  Mistral) or ``out_proj`` (OPT, CLIP), all ``nn.Linear``.
* :class:`BertStyleAttention`: a parent with ``self.query``/``self.key``/``self.value`` and
  ``output.dense`` (BERT, RoBERTa). The VO product is ``W_value^T W_dense^T``; the residual
  and LayerNorm that ``output`` adds after ``dense`` are outside it, as in any post-norm block.

These modules are usually causal and often return tuples or take extra arguments, so the
probes here run the module's forward with the keywords it declares (``attention_mask=None``,
identity rotary ``position_embeddings`` where it asks for them) and read the attention map
from whichever of these the forward produces: a ``torch.nn.functional.scaled_dot_product_attention``
call (replaced, during the probe only, by an explicit softmax that records its
probabilities), an ``attn_dropout``/``dropout`` module, or a returned (1, heads, L, L) tensor.

Rotary position embeddings applied from outside the module (Llama's ``position_embeddings``)
rotate queries and keys by their positions; the product mimetic init sets is the one the
weights alone determine, i.e. the one at relative offset 0.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from mimetic.init.base import InitError
from mimetic.init.layers import AttentionAdapter, _not_identity, register_attention_adapter


def _weight_2d(module: object) -> torch.Tensor | None:
    weight = getattr(module, "weight", None)
    return weight if isinstance(weight, torch.Tensor) and weight.dim() == 2 else None


def _heads(module: nn.Module) -> int | None:
    for attr in ("num_heads", "n_head", "num_attention_heads", "n_heads"):
        value = getattr(module, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    config = getattr(module, "config", None)
    value = getattr(config, "num_attention_heads", None)
    return value if isinstance(value, int) and value > 0 else None


@contextlib.contextmanager
def _record_attention(module: nn.Module, dropout_names: tuple[str, ...]) -> Iterator[list[torch.Tensor]]:
    """Record attention probabilities while ``module`` runs (see the module docstring)."""
    captured: list[torch.Tensor] = []
    real_sdpa = F.scaled_dot_product_attention

    def explicit_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                      enable_gqa=False):
        if key.shape[-3] != query.shape[-3]:  # grouped-query: repeat the shared key/value heads
            repeat = query.shape[-3] // key.shape[-3]
            key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
        scale = query.shape[-1] ** -0.5 if scale is None else scale
        logits = query @ key.transpose(-2, -1) * scale
        lq, lk = logits.shape[-2:]
        if is_causal:
            logits = logits.masked_fill(~torch.ones(lq, lk, dtype=torch.bool, device=logits.device).tril(), -torch.inf)
        if attn_mask is not None:
            logits = logits.masked_fill(~attn_mask, -torch.inf) if attn_mask.dtype == torch.bool else logits + attn_mask
        probs = logits.softmax(-1)
        captured.append(probs)
        return probs @ value

    hooks = []
    for name in dropout_names:
        child = getattr(module, name, None)
        if isinstance(child, nn.Dropout):
            hooks.append(child.register_forward_hook(lambda _m, _i, out: captured.append(out)))
    F.scaled_dot_product_attention = explicit_sdpa
    try:
        yield captured
    finally:
        F.scaled_dot_product_attention = real_sdpa
        for hook in hooks:
            hook.remove()


def _call_kwargs(module: nn.Module, tokens: torch.Tensor, head_dim: int) -> dict:
    """Keywords the forward declares and needs: no mask, and rotary embeddings that rotate nothing."""
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError):
        return {}
    kwargs: dict = {}
    if "attention_mask" in params:
        kwargs["attention_mask"] = None
    if "position_embeddings" in params:
        n = tokens.shape[1]
        cos = torch.ones(1, n, head_dim, dtype=tokens.dtype, device=tokens.device)
        kwargs["position_embeddings"] = (cos, torch.zeros_like(cos))
    return kwargs


def _first_tensor(out: object) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else next(t for t in out if isinstance(t, torch.Tensor))


def _attention_map(module: nn.Module, tokens: torch.Tensor, heads: int, head_dim: int,
                   dropout_names: tuple[str, ...]) -> torch.Tensor:
    """(heads, L, L) attention probabilities of ``module`` on one sequence ``tokens`` (1, L, d)."""
    n = tokens.shape[1]
    with _record_attention(module, dropout_names) as captured, torch.no_grad():
        out = module(tokens, **_call_kwargs(module, tokens, head_dim))
    returned = [t for t in (out if isinstance(out, (tuple, list)) else ()) if isinstance(t, torch.Tensor)]
    for probs in captured + returned:
        if probs.dim() == 4 and tuple(probs.shape) == (1, heads, n, n):
            return probs[0]
    raise InitError("could not observe the attention map (no scaled_dot_product_attention call, "
                       "attention dropout module or returned attention weights)")


class _LMAdapter(AttentionAdapter):
    causal = True
    dropout_names: tuple[str, ...] = ("attn_dropout", "attn_drop", "dropout")

    def _attention_module(self, module: nn.Module) -> nn.Module:
        return module

    def attention_log_probs(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        if queries is not keys:
            raise InitError(f"{self.name} is self-attention: queries and keys are the same tokens")
        module = self._attention_module(self._float64_copy())
        probs = _attention_map(module, queries.to(torch.float64)[None], self.num_heads, self.head_dim,
                               self.dropout_names)
        return probs.log()

    def value_path(self, values: torch.Tensor) -> torch.Tensor:
        module = self._float64_copy()
        tokens = values.to(torch.float64)[:, None, :]  # one token per sequence: the softmax is exactly 1
        with _record_attention(module, ()), torch.no_grad():
            out = _first_tensor(module(tokens, **_call_kwargs(module, tokens, self.head_dim)))
        return out[:, 0, :]


class FusedCAttnAttention(_LMAdapter):
    """GPT-2 (Hugging Face ``Conv1D``, weight (in, out)) and nanoGPT (``nn.Linear``): ``c_attn`` + ``c_proj``.

    ``c_attn``'s outputs are split into q, k, v (``split_size`` each, in that order), then
    into heads: head ``i`` owns outputs ``i*head_dim : (i+1)*head_dim`` of each.
    """

    kind = "gpt_c_attn"
    description = "GPT-2/nanoGPT attention (fused c_attn + c_proj, nn.Linear or Hugging Face Conv1D)"

    @staticmethod
    def matches(module: nn.Module) -> bool:
        c_attn, c_proj = getattr(module, "c_attn", None), getattr(module, "c_proj", None)
        w, wo = _weight_2d(c_attn), _weight_2d(c_proj)
        if w is None or wo is None or _heads(module) is None:
            return False
        fused = w.shape[0] if isinstance(c_attn, nn.Linear) else w.shape[1]
        return fused % 3 == 0

    def __init__(self, name: str, module: nn.Module):
        super().__init__(name, module)
        self.transposed = not isinstance(module.c_attn, nn.Linear)  # Conv1D: y = x @ W + b
        fused = module.c_attn.weight.shape[1 if self.transposed else 0]
        self.num_heads = int(_heads(module))
        self.split_size = int(getattr(module, "split_size", fused // 3))
        self.head_dim = int(getattr(module, "head_dim", self.split_size // self.num_heads))

    def _as_linear(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.T if self.transposed else weight  # a view: writes land in the parameter

    def _part(self, i: int) -> torch.Tensor:
        w = self._as_linear(self.module.c_attn.weight)
        return w[i * self.split_size : (i + 1) * self.split_size]

    def q_weight(self) -> torch.Tensor:
        return self._part(0)

    def k_weight(self) -> torch.Tensor:
        return self._part(1)

    def v_weight(self) -> torch.Tensor:
        return self._part(2)

    def o_weight(self) -> torch.Tensor:
        return self._as_linear(self.module.c_proj.weight)

    def unsupported_reason(self) -> str | None:
        m = self.module
        if getattr(m, "is_cross_attention", False) or hasattr(m, "q_attn"):
            return "cross-attention (queries from q_attn, keys and values from the encoder): not self-attention"
        if getattr(m, "pruned_heads", None):
            return "pruned heads: the fused weights no longer follow the heads x head_dim layout"
        return None

    @property
    def scale(self) -> float:
        m = self.module
        if hasattr(m, "scale_attn_weights"):  # Hugging Face GPT-2
            scale = self.head_dim**-0.5 if m.scale_attn_weights else 1.0
            if getattr(m, "scale_attn_by_inverse_layer_idx", False):
                scale /= float(m.layer_idx + 1)
            return scale
        return float(getattr(m, "scale", self.head_dim**-0.5))


class SeparateProjAttention(_LMAdapter):
    """Llama/Mistral (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``) and OPT/CLIP (``out_proj``)."""

    kind = "qkv_proj"
    description = "Llama/OPT-style attention (q_proj, k_proj, v_proj + o_proj/out_proj)"

    @staticmethod
    def matches(module: nn.Module) -> bool:
        linear = [getattr(module, n, None) for n in ("q_proj", "k_proj", "v_proj")]
        out = getattr(module, "o_proj", None) or getattr(module, "out_proj", None)
        return all(isinstance(m, nn.Linear) for m in [*linear, out]) and _heads(module) is not None

    def __init__(self, name: str, module: nn.Module):
        super().__init__(name, module)
        self.num_heads = int(_heads(module))
        self.head_dim = int(getattr(module, "head_dim", module.q_proj.out_features // self.num_heads))

    def q_weight(self) -> torch.Tensor:
        return self.module.q_proj.weight

    def k_weight(self) -> torch.Tensor:
        return self.module.k_proj.weight

    def v_weight(self) -> torch.Tensor:
        return self.module.v_proj.weight

    def o_weight(self) -> torch.Tensor:
        m = self.module
        return (m.o_proj if isinstance(getattr(m, "o_proj", None), nn.Linear) else m.out_proj).weight

    def unsupported_reason(self) -> str | None:
        m = self.module
        if m.k_proj.out_features != m.q_proj.out_features or m.v_proj.out_features != m.q_proj.out_features:
            return (
                f"grouped-query attention ({m.k_proj.out_features // self.head_dim} key/value heads for "
                f"{self.num_heads} query heads): heads share keys and values, so per-head QK targets and the "
                "VO target cannot be set independently"
            )
        if _not_identity(getattr(m, "q_norm", None)) or _not_identity(getattr(m, "k_norm", None)):
            return (
                "q_norm/k_norm: queries and keys are normalised per head before the dot product, so the "
                "logits are not x W_q^T W_k x'^T"
            )
        if getattr(m, "is_decoder", False) and getattr(m, "is_cross_attention", False):
            return "cross-attention: not self-attention"
        return None

    @property
    def scale(self) -> float:
        m = self.module
        return float(getattr(m, "scaling", getattr(m, "scale", self.head_dim**-0.5)))


class BertStyleAttention(_LMAdapter):
    """BERT/RoBERTa: ``self`` holds ``query``/``key``/``value``, ``output.dense`` projects back."""

    kind = "bert"
    description = "BERT-style attention (self.query/key/value + output.dense)"
    causal = False  # encoders attend both ways; the causal read-out would work too, at twice the cost

    @staticmethod
    def matches(module: nn.Module) -> bool:
        inner, output = getattr(module, "self", None), getattr(module, "output", None)
        return (
            isinstance(inner, nn.Module)
            and all(isinstance(getattr(inner, n, None), nn.Linear) for n in ("query", "key", "value"))
            and isinstance(getattr(output, "dense", None), nn.Linear)
            and _heads(inner) is not None
        )

    def __init__(self, name: str, module: nn.Module):
        super().__init__(name, module)
        inner = module.self
        self.num_heads = int(_heads(inner))
        self.head_dim = int(getattr(inner, "attention_head_size", inner.query.out_features // self.num_heads))

    def q_weight(self) -> torch.Tensor:
        return self.module.self.query.weight

    def k_weight(self) -> torch.Tensor:
        return self.module.self.key.weight

    def v_weight(self) -> torch.Tensor:
        return self.module.self.value.weight

    def o_weight(self) -> torch.Tensor:
        return self.module.output.dense.weight

    def unsupported_reason(self) -> str | None:
        inner = self.module.self
        kind = getattr(inner, "position_embedding_type", "absolute")
        if kind not in (None, "absolute") or hasattr(inner, "distance_embedding"):
            return (
                f"position_embedding_type={kind!r}: relative position terms enter the logits, which then "
                "depend on token positions as well as on W_q^T W_k"
            )
        if getattr(inner, "is_cross_attention", False):
            return "cross-attention: not self-attention"
        return None

    def _attention_module(self, module: nn.Module) -> nn.Module:
        return module.self

    def value_path(self, values: torch.Tensor) -> torch.Tensor:
        module = self._float64_copy()
        tokens = values.to(torch.float64)[:, None, :]
        with _record_attention(module.self, ()), torch.no_grad():
            context = _first_tensor(module.self(tokens, **_call_kwargs(module.self, tokens, self.head_dim)))
            return module.output.dense(context)[:, 0, :]


LM_ADAPTERS: list[type[AttentionAdapter]] = [FusedCAttnAttention, SeparateProjAttention, BertStyleAttention]

for _adapter in LM_ADAPTERS:
    register_attention_adapter(_adapter, first=False)

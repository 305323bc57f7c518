"""Find self-attention layers in a model and expose their weights in one convention.

Every adapter presents a layer as four weight views, each in ``nn.Linear``'s (out, in)
layout so that writing into them writes into the model:

* ``q_weight``, ``k_weight``, ``v_weight``: (heads * head_dim) x (query / key / value input dim),
  head ``i`` owning rows ``i*head_dim : (i+1)*head_dim``;
* ``o_weight``: out_dim x (heads * head_dim).

Adapters also offer *probes* that run the real module's forward on chosen tokens, so
diagnostics measure what the module computes rather than what an adapter believes its
layout to be (a layout bug in an adapter then shows up as a wrong product).

To support another attention module, subclass :class:`AttentionAdapter` and add it to
``ADAPTERS``.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod

import torch
from torch import nn


class AttentionAdapter(ABC):
    """One attention layer of a model, seen through the (out, in) weight convention."""

    kind: str = "abstract"

    def __init__(self, name: str, module: nn.Module):
        self.name = name
        self.module = module

    @staticmethod
    @abstractmethod
    def matches(module: nn.Module) -> bool: ...

    # --- shapes -------------------------------------------------------------------
    num_heads: int
    head_dim: int

    @property
    def attn_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def query_dim(self) -> int:
        return self.q_weight().shape[1]

    @property
    def key_dim(self) -> int:
        return self.k_weight().shape[1]

    @property
    def value_dim(self) -> int:
        return self.v_weight().shape[1]

    @property
    def out_dim(self) -> int:
        return self.o_weight().shape[0]

    def check_shapes(self) -> None:
        """Raise ``ValueError`` if the layer's dims do not split into its heads."""
        a = self.attn_dim
        for what, w in (("query", self.q_weight()), ("key", self.k_weight()), ("value", self.v_weight())):
            if w.shape[0] != a:
                raise ValueError(
                    f"{self.name}: {what} projection has {w.shape[0]} outputs, but "
                    f"num_heads={self.num_heads} x head_dim={self.head_dim} = {a}; "
                    "the attention width must be divisible by the number of heads"
                )
        if self.o_weight().shape[1] != a:
            raise ValueError(f"{self.name}: output projection takes {self.o_weight().shape[1]} inputs, expected {a}")

    # --- weights (views into the module's parameters) -----------------------------
    @abstractmethod
    def q_weight(self) -> torch.Tensor: ...

    @abstractmethod
    def k_weight(self) -> torch.Tensor: ...

    @abstractmethod
    def v_weight(self) -> torch.Tensor: ...

    @abstractmethod
    def o_weight(self) -> torch.Tensor: ...

    # --- probes through the real forward ------------------------------------------
    @abstractmethod
    def attention_log_probs(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """log softmax attention, (heads, Lq, Lk), for query tokens (Lq, dq) and key tokens (Lk, dk).

        Self-attention modules accept only ``queries is keys``.
        """

    @abstractmethod
    def value_path(self, values: torch.Tensor) -> torch.Tensor:
        """Output of the module for each value token attended to alone: (L, out_dim)."""

    @property
    def scale(self) -> float:
        """The factor the module applies to q·k before the softmax."""
        return self.head_dim**-0.5

    def _float64_copy(self) -> nn.Module:
        # A private float64 copy: probes must not touch the model, and float32 would cost
        # the diagnostics several digits when recovering logits from probabilities.
        return copy.deepcopy(self.module).to(torch.float64).eval()


class TimmFusedAttention(AttentionAdapter):
    """timm's ``Attention`` (and look-alikes): one fused ``qkv`` Linear, then ``proj``.

    ``qkv`` output is reshaped to (3, heads, head_dim), so rows ``[0, a)`` are queries,
    ``[a, 2a)`` keys and ``[2a, 3a)`` values, ``a = heads * head_dim``.
    """

    kind = "timm"

    @staticmethod
    def matches(module: nn.Module) -> bool:
        return (
            isinstance(getattr(module, "qkv", None), nn.Linear)
            and isinstance(getattr(module, "proj", None), nn.Linear)
            and hasattr(module, "num_heads")
            and hasattr(module, "attn_drop")
        )

    def __init__(self, name: str, module: nn.Module):
        super().__init__(name, module)
        self.num_heads = int(module.num_heads)
        self.head_dim = int(getattr(module, "head_dim", module.qkv.out_features // (3 * self.num_heads)))

    def _qkv_rows(self, i: int) -> torch.Tensor:
        a = self.attn_dim
        return self.module.qkv.weight[i * a : (i + 1) * a]

    def q_weight(self) -> torch.Tensor:
        return self._qkv_rows(0)

    def k_weight(self) -> torch.Tensor:
        return self._qkv_rows(1)

    def v_weight(self) -> torch.Tensor:
        return self._qkv_rows(2)

    def o_weight(self) -> torch.Tensor:
        return self.module.proj.weight

    def check_shapes(self) -> None:
        if self.module.qkv.out_features != 3 * self.attn_dim:
            raise ValueError(
                f"{self.name}: qkv has {self.module.qkv.out_features} outputs, not 3 x num_heads "
                f"({self.num_heads}) x head_dim ({self.head_dim}); the width must be divisible by the heads"
            )
        super().check_shapes()

    @property
    def scale(self) -> float:
        return float(getattr(self.module, "scale", self.head_dim**-0.5))

    def attention_log_probs(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        if queries is not keys:
            raise ValueError(f"{self.name} is self-attention: queries and keys are the same tokens")
        module = self._float64_copy()
        # The non-fused path materialises the softmax and passes it through attn_drop.
        module.fused_attn = False
        captured = []
        hook = module.attn_drop.register_forward_hook(lambda _m, _i, out: captured.append(out))
        with torch.no_grad():
            module(queries.to(torch.float64)[None])
        hook.remove()
        if not captured:
            raise RuntimeError(f"{self.name}: could not observe the attention map (no attn_drop call)")
        return captured[0][0].log()

    def value_path(self, values: torch.Tensor) -> torch.Tensor:
        module = self._float64_copy()
        with torch.no_grad():
            # One token per sequence: the softmax over a single key is exactly 1.
            return module(values.to(torch.float64)[:, None, :])[:, 0, :]


class TorchMultiheadAttention(AttentionAdapter):
    """``torch.nn.MultiheadAttention``: packed ``in_proj_weight`` or separate q/k/v weights."""

    kind = "torch_mha"

    @staticmethod
    def matches(module: nn.Module) -> bool:
        return isinstance(module, nn.MultiheadAttention)

    def __init__(self, name: str, module: nn.MultiheadAttention):
        super().__init__(name, module)
        self.num_heads = int(module.num_heads)
        self.head_dim = int(module.head_dim)

    def _packed(self) -> bool:
        return self.module.in_proj_weight is not None

    def q_weight(self) -> torch.Tensor:
        m = self.module
        return m.in_proj_weight[: m.embed_dim] if self._packed() else m.q_proj_weight

    def k_weight(self) -> torch.Tensor:
        m = self.module
        return m.in_proj_weight[m.embed_dim : 2 * m.embed_dim] if self._packed() else m.k_proj_weight

    def v_weight(self) -> torch.Tensor:
        m = self.module
        return m.in_proj_weight[2 * m.embed_dim :] if self._packed() else m.v_proj_weight

    def o_weight(self) -> torch.Tensor:
        return self.module.out_proj.weight

    def _batch(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.to(torch.float64)
        return tokens[None] if self.module.batch_first else tokens[:, None]

    def attention_log_probs(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        module = self._float64_copy()
        values = torch.zeros(keys.shape[0], module.vdim, dtype=torch.float64)
        with torch.no_grad():
            _, weights = module(
                self._batch(queries), self._batch(keys), self._batch(values),
                need_weights=True, average_attn_weights=False,
            )
        return weights[0].log()

    def value_path(self, values: torch.Tensor) -> torch.Tensor:
        module = self._float64_copy()
        n = values.shape[0]
        queries = torch.zeros(n, module.embed_dim, dtype=torch.float64)
        keys = torch.zeros(n, module.kdim, dtype=torch.float64)

        def one_token_each(t: torch.Tensor) -> torch.Tensor:
            t = t.to(torch.float64)[:, None, :]  # (n, 1, dim): n sequences of one token
            return t if module.batch_first else t.transpose(0, 1)

        with torch.no_grad():
            out, _ = module(one_token_each(queries), one_token_each(keys), one_token_each(values), need_weights=False)
        return out[:, 0] if module.batch_first else out[0]


ADAPTERS: list[type[AttentionAdapter]] = [TorchMultiheadAttention, TimmFusedAttention]


def find_attention_layers(model: nn.Module) -> list[AttentionAdapter]:
    """Every recognised attention layer of ``model``, in module order."""
    found: list[AttentionAdapter] = []
    claimed: list[str] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix in claimed):
            continue  # inside a layer already found (e.g. MultiheadAttention.out_proj)
        for adapter in ADAPTERS:
            if adapter.matches(module):
                found.append(adapter(name or type(module).__name__, module))
                claimed.append(name)
                break
    return found


def supported_layers_text() -> str:
    return (
        "timm Attention (fused qkv + proj, e.g. timm VisionTransformer) and torch.nn.MultiheadAttention; "
        "register another adapter in mimetic.init.layers.ADAPTERS"
    )

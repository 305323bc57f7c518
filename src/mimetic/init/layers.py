"""Find self-attention layers in a model and expose their weights in one convention.

Every adapter presents a layer as four weight views, each in ``nn.Linear``'s (out, in)
layout so that writing into them writes into the model:

* ``q_weight``, ``k_weight``, ``v_weight``: (heads * head_dim) x (query / key / value input dim),
  head ``i`` owning rows ``i*head_dim : (i+1)*head_dim``;
* ``o_weight``: out_dim x (heads * head_dim).

Adapters also offer *probes* that run the real module's forward on chosen tokens, so
diagnostics measure what the module computes rather than what an adapter believes its
layout to be (a layout bug in an adapter then shows up as a wrong product).

Refusing what cannot be done
----------------------------
Writing the two products is only the method when the module's forward computes
``softmax(x W_q^T W_k x'^T * scale)`` per head and ``x W_v^T W_o^T`` on the value path.
:func:`scan_attention` therefore sorts every module of a model into

* ``layers``: claimed by an adapter and checked: not on the meta device, shapes that split
  into heads, no known variant that changes the products (qk-norm, a norm or a gate
  between attention and projection, talking heads, cross-covariance attention, relative
  positions...), and a probe with random tokens through the real forward that agrees
  with the weights (which catches look-alikes nobody listed);
* ``unsupported``: claimed, but refused, with the reason;
* ``unrecognised``: modules that look like attention (class name with ``Attention``/``Attn``/
  ``XCA``, or children such as ``qkv``, ``q_proj``+``k_proj``, ``query``+``key``) that no
  adapter claims.

:func:`attention_layers_or_raise` (what every init uses) raises :class:`InitError` listing
the last two groups rather than silently initialising only part of the model.

Supporting another attention module
-----------------------------------
Subclass :class:`AttentionAdapter` (``matches``, ``num_heads``/``head_dim``, the four weight
views and the two probes) and register it; it is then tried before the built-in adapters:

    from mimetic.init import AttentionAdapter, register_attention_adapter

    @register_attention_adapter
    class MyAttentionAdapter(AttentionAdapter):
        kind = "my_attention"
        ...

A class that merely has an attention-like name but is not self-attention (e.g. a
channel-attention gate) can be taken off the unrecognised list with
:func:`register_non_attention`.
"""

from __future__ import annotations

import copy
import math
from abc import ABC, abstractmethod
from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import nn

from mimetic.init.base import InitError


class AttentionAdapter(ABC):
    """One attention layer of a model, seen through the (out, in) weight convention."""

    kind: str = "abstract"
    #: One line for error messages listing what is supported.
    description: str = ""
    #: Self-attention modules take one token sequence (queries are keys).
    self_attention: bool = True
    #: The module may mask later keys (a causal decoder): probes then read each pair of
    #: tokens from an ordering in which the key comes first (see :func:`token_logits`).
    causal: bool = False

    def __init__(self, name: str, module: nn.Module):
        self.name = name
        self.module = module

    def __repr__(self) -> str:
        heads = getattr(self, "num_heads", "?")
        return f"{type(self).__name__}({self.name!r}, heads={heads})"

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
        """Raise :class:`InitError` if the layer's dims do not split into its heads."""
        a = self.attn_dim
        for what, w in (("query", self.q_weight()), ("key", self.k_weight()), ("value", self.v_weight())):
            if w.shape[0] != a:
                raise InitError(
                    f"{self.name}: {what} projection has {w.shape[0]} outputs, but "
                    f"num_heads={self.num_heads} x head_dim={self.head_dim} = {a}; "
                    "the attention width must be divisible by the number of heads"
                )
        if self.o_weight().shape[1] != a:
            raise InitError(f"{self.name}: output projection takes {self.o_weight().shape[1]} inputs, expected {a}")

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

    # --- can the method be applied here? --------------------------------------------
    def unsupported_reason(self) -> str | None:
        """Why the products of this module are not the ones mimetic init sets (None: they are).

        Adapters override this for known variants of the modules they match, so the user
        reads the variant's name rather than a probe mismatch.
        """
        return None

    def problem(self, *, verify: bool = True) -> str | None:
        """Why this layer cannot be initialised or measured (None when it can)."""
        weights = (self.q_weight(), self.k_weight(), self.v_weight(), self.o_weight())
        if any(w.is_meta for w in weights):
            return (
                "its parameters are on the meta device (no storage), so writing into them would do "
                "nothing; materialise the model first (e.g. model.to_empty(device='cpu') and its own "
                "init), then apply this init"
            )
        reason = self.unsupported_reason()  # a named variant first: clearer than the shape it breaks
        if reason is not None:
            return reason
        try:
            self.check_shapes()
        except InitError as err:
            return str(err).removeprefix(f"{self.name}: ")
        return self.verify() if verify else None

    def verify(self, tokens: int = 8) -> str | None:
        """Probe the real forward with random tokens; None if it computes the products the weights give.

        The logits between probe tokens must be ``x W_q^i^T W_k^i x'^T`` (per head, after
        removing biases by differencing against a zero token) and a token attended to alone
        must come out as ``x W_v^T W_o^T`` (plus a constant). Anything else between the
        weights and the softmax or the output (a norm, a gate, head mixing, another scale)
        breaks one of the two. The tokens come from a private generator: the model's and
        torch's random streams are untouched.
        """
        g = torch.Generator().manual_seed(0)
        dq, dk, dv = self.query_dim, self.key_dim, self.value_dim
        if self.self_attention and not dq == dk == dv:
            return f"self-attention with query/key/value input dims {dq}/{dk}/{dv} (must be equal)"
        device = self.q_weight().device
        xq = torch.randn(tokens, dq, generator=g, dtype=torch.float64) / math.sqrt(dq)
        xk = xq if dq == dk else torch.randn(tokens, dk, generator=g, dtype=torch.float64) / math.sqrt(dk)
        xv = xq if dv == dq else torch.randn(tokens, dv, generator=g, dtype=torch.float64) / math.sqrt(dv)
        zv = torch.cat([torch.zeros(1, dv, dtype=torch.float64), xv]).to(device)
        hd = self.head_dim
        q = self.q_weight().detach().to("cpu", torch.float64)
        k = self.k_weight().detach().to("cpu", torch.float64)

        def bilinear(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return torch.stack([
                (a @ q[h * hd : (h + 1) * hd].T) @ (b @ k[h * hd : (h + 1) * hd].T).T for h in range(self.num_heads)
            ])

        # The logits are read back from log-probabilities, so the probe's error is absolute, not relative:
        # a module whose softmax runs in float32 even in the float64 copy (Hugging Face's eager attention:
        # softmax(..., dtype=float32)) rounds each probability to ~6e-8 relative, ~1e-7 in each
        # log-probability, however small the logits. Fresh weights (std 0.02) give logits of ~1e-3, where
        # that is ~1e-4 relative, the tolerance: such layers were refused on some seeds and not others. So
        # the query/key tokens are stretched until the scaled logits are of order one (logits are bilinear
        # in them): the float32 softmax is then ~1e-7 relative for any weight scale, three orders below the
        # tolerance, large trained logits do not saturate the softmax, and a structural difference (a norm,
        # a gate, another scale) stays a relative difference of order one at any token scale.
        size = (bilinear(xq, xk) * self.scale).pow(2).mean().sqrt().item()
        if math.isfinite(size) and size > 0:
            same = xk is xq
            xq = xq * size**-0.5
            xk = xq if same else xk * size**-0.5
        try:
            measured = token_logits(self, xq.to(device), xk.to(device) if xk is not xq else None)
            out = self.value_path(zv).cpu()
        except Exception as err:  # a module that cannot take the probes is not one we understand
            return f"probing its forward failed ({type(err).__name__}: {err})"
        if tuple(measured.shape) != (self.num_heads, tokens, tokens):
            return (
                f"its attention map does not have the shape (heads, tokens, tokens) for {self.num_heads} heads "
                f"and {tokens} tokens (e.g. attention over channels, or extra keys)"
            )
        expected = bilinear(xq, xk)
        if not _close(measured, expected):
            return (
                "the attention logits its forward computes are not x W_q^T W_k x'^T * scale per head "
                f"(relative difference {_rel_diff(measured, expected):.2g}); something sits between the "
                "weights and the softmax"
            )
        v = self.v_weight().detach().to("cpu", torch.float64)
        o = self.o_weight().detach().to("cpu", torch.float64)
        if not _close(out[1:] - out[:1], xv @ v.T @ o.T):
            return (
                "a token attended to alone does not come out as x W_v^T W_o^T "
                f"(relative difference {_rel_diff(out[1:] - out[:1], xv @ v.T @ o.T):.2g}); something sits "
                "between the value and output projections"
            )
        return None


def token_logits(layer: AttentionAdapter, queries: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
    """The bilinear part of the logits, ``queries W_q^i^T W_k^i keys^T`` per head (float64, CPU).

    Read off the real forward through :meth:`AttentionAdapter.attention_log_probs`: a zero
    token is prepended, and differencing each row against the zero key and the zero
    query's row removes the softmax's per-row constant and every bias. ``keys=None`` means
    the same tokens as ``queries`` (required by self-attention modules).

    For a ``causal`` layer a query only sees keys up to its own position, and the zero
    token at the front cannot see the others; so the tokens are sent twice, in order and
    reversed, each time between a leading zero key and a trailing zero query (which sees
    every key), and each pair is read from the pass in which its key comes first.
    """
    dtype = torch.float64
    if not layer.causal:
        zq = torch.cat([torch.zeros(1, queries.shape[1], dtype=dtype, device=queries.device), queries.to(dtype)])
        zk = zq if keys is None else torch.cat(
            [torch.zeros(1, keys.shape[1], dtype=dtype, device=keys.device), keys.to(dtype)]
        )
        logp = layer.attention_log_probs(zq, zk).cpu()  # (heads, 1+nq, 1+nk)
        logits = logp[:, 1:, 1:] - logp[:, 1:, :1] - logp[:, :1, 1:] + logp[:, :1, :1]
        return logits / layer.scale
    if keys is not None:
        raise InitError(f"{layer.name}: a causal layer is probed with one token sequence (queries are keys)")
    n = queries.shape[0]
    zero = torch.zeros(1, queries.shape[1], dtype=dtype, device=queries.device)

    def one_pass(tokens: torch.Tensor) -> torch.Tensor:
        seq = torch.cat([zero, tokens.to(dtype), zero])
        logp = layer.attention_log_probs(seq, seq).cpu()  # (heads, n+2, n+2)
        rows = logp[:, 1 : n + 1, 1 : n + 1] - logp[:, 1 : n + 1, :1]
        last = logp[:, n + 1 : n + 2, 1 : n + 1] - logp[:, n + 1 : n + 2, :1]  # the trailing zero query
        return rows - last

    forward = one_pass(queries)  # valid where key index <= query index
    backward = one_pass(queries.flip(0)).flip(1, 2)  # valid where key index >= query index
    lower = torch.ones(n, n, dtype=torch.bool).tril()
    return torch.where(lower, forward, backward) / layer.scale


def _rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if not torch.isfinite(a).all():
        return math.inf
    scale = max(torch.linalg.norm(a).item(), torch.linalg.norm(b).item(), 1e-30)
    return torch.linalg.norm(a - b).item() / scale


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    # Structural differences (a norm, a gate, another scale, mixed heads) are O(1); 1e-4 leaves room
    # for modules that compute their softmax in float32 even in a float64 copy (~1e-7 once the probe's
    # logits are of order one, see AttentionAdapter.verify).
    return a.shape == b.shape and _rel_diff(a, b) < 1e-4


def _not_identity(module: object) -> bool:
    return isinstance(module, nn.Module) and not isinstance(module, nn.Identity)


class TimmFusedAttention(AttentionAdapter):
    """timm's ``Attention`` (and look-alikes): one fused ``qkv`` Linear, then ``proj``.

    ``qkv`` output is reshaped to (3, heads, head_dim), so rows ``[0, a)`` are queries,
    ``[a, 2a)`` keys and ``[2a, 3a)`` values, ``a = heads * head_dim``.
    """

    kind = "timm"
    description = "timm Attention (fused qkv + proj, e.g. timm VisionTransformer)"

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
            raise InitError(
                f"{self.name}: qkv has {self.module.qkv.out_features} outputs, not 3 x num_heads "
                f"({self.num_heads}) x head_dim ({self.head_dim}); the width must be divisible by the heads"
            )
        super().check_shapes()

    def unsupported_reason(self) -> str | None:
        m = self.module
        if hasattr(m, "temperature") or type(m).__name__ in ("XCA", "CrossCovarianceAttn"):
            return (
                "cross-covariance attention (XCiT's XCA): queries and keys are L2-normalised and the "
                "softmax runs over channels, not tokens, so there is no token-token W_q^T W_k product to set"
            )
        if hasattr(m, "proj_l") or hasattr(m, "proj_w"):
            return (
                "talking-heads attention (CaiT): proj_l mixes the heads' logits before the softmax and "
                "proj_w mixes the maps after it, so no head's logits are its own W_q^T W_k"
            )
        if _not_identity(getattr(m, "q_norm", None)) or _not_identity(getattr(m, "k_norm", None)):
            return (
                "qk_norm=True: queries and keys are normalised per head before the dot product, so the "
                "logits are not x W_q^T W_k x'^T and the QK target would not be the product computed"
            )
        if _not_identity(getattr(m, "norm", None)):
            return (
                "scale_norm=True: a norm sits between the attention output and proj, so the value path "
                "is not x W_v^T W_o^T and the VO target would not be the product computed"
            )
        if getattr(m, "gate", None) is not None:
            return (
                "gated attention: a sigmoid gate multiplies the attention output before proj, so the "
                "value path is not x W_v^T W_o^T"
            )
        if hasattr(m, "lambda_init") or hasattr(m, "lambda_q1"):
            return "differential attention: each head's map is the difference of two softmaxes"
        for attr, what in (
            ("rope", "rotary position embedding"),
            ("rotary_emb", "rotary position embedding"),
            ("rel_pos", "relative position terms"),
            ("relative_position_bias_table", "a relative position bias"),
            ("rel_pos_h", "relative position terms"),
        ):
            if getattr(m, attr, None) is not None:
                return (
                    f"{what} in the logits: they depend on token positions as well as on W_q^T W_k; "
                    "no adapter handles that yet"
                )
        return None

    @property
    def scale(self) -> float:
        return float(getattr(self.module, "scale", self.head_dim**-0.5))

    def attention_log_probs(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        if queries is not keys:
            raise InitError(f"{self.name} is self-attention: queries and keys are the same tokens")
        module = self._float64_copy()
        # The non-fused path materialises the softmax and passes it through attn_drop.
        module.fused_attn = False
        captured = []
        hook = module.attn_drop.register_forward_hook(lambda _m, _i, out: captured.append(out))
        with torch.no_grad():
            module(queries.to(torch.float64)[None])
        hook.remove()
        if not captured:
            raise InitError(f"{self.name}: could not observe the attention map (no attn_drop call)")
        return captured[0][0].log()

    def value_path(self, values: torch.Tensor) -> torch.Tensor:
        module = self._float64_copy()
        with torch.no_grad():
            # One token per sequence: the softmax over a single key is exactly 1.
            return module(values.to(torch.float64)[:, None, :])[:, 0, :]


class TorchMultiheadAttention(AttentionAdapter):
    """``torch.nn.MultiheadAttention``: packed ``in_proj_weight`` or separate q/k/v weights."""

    kind = "torch_mha"
    description = "torch.nn.MultiheadAttention"
    self_attention = False

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

    def unsupported_reason(self) -> str | None:
        m = self.module
        if m.bias_k is not None or m.add_zero_attn:
            return (
                "add_bias_kv/add_zero_attn: every query also attends to an extra key whose value is not "
                "x W_v^T, so the value path is not x W_v^T W_o^T"
            )
        return None

    def _batch(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens.to(torch.float64)
        return tokens[None] if self.module.batch_first else tokens[:, None]

    def attention_log_probs(self, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        module = self._float64_copy()
        values = torch.zeros(keys.shape[0], module.vdim, dtype=torch.float64, device=keys.device)
        with torch.no_grad():
            _, weights = module(
                self._batch(queries), self._batch(keys), self._batch(values),
                need_weights=True, average_attn_weights=False,
            )
        return weights[0].log()

    def value_path(self, values: torch.Tensor) -> torch.Tensor:
        module = self._float64_copy()
        n = values.shape[0]
        queries = torch.zeros(n, module.embed_dim, dtype=torch.float64, device=values.device)
        keys = torch.zeros(n, module.kdim, dtype=torch.float64, device=values.device)

        def one_token_each(t: torch.Tensor) -> torch.Tensor:
            t = t.to(torch.float64)[:, None, :]  # (n, 1, dim): n sequences of one token
            return t if module.batch_first else t.transpose(0, 1)

        with torch.no_grad():
            out, _ = module(one_token_each(queries), one_token_each(keys), one_token_each(values), need_weights=False)
        return out[:, 0] if module.batch_first else out[0]


ADAPTERS: list[type[AttentionAdapter]] = [TorchMultiheadAttention, TimmFusedAttention]


def register_attention_adapter(
    adapter_cls: type[AttentionAdapter], *, first: bool = True
) -> type[AttentionAdapter]:
    """Make every init and diagnostic recognise the modules ``adapter_cls.matches``.

    ``first=True`` tries it before the adapters already registered (so it can claim a
    module a built-in adapter would also match); ``first=False`` tries it last.
    Registering a class again moves it. Returns the class, so this works as a decorator.
    """
    if not (isinstance(adapter_cls, type) and issubclass(adapter_cls, AttentionAdapter)):
        raise TypeError(f"register_attention_adapter needs an AttentionAdapter subclass, got {adapter_cls!r}")
    if adapter_cls in ADAPTERS:
        ADAPTERS.remove(adapter_cls)
    if first:
        ADAPTERS.insert(0, adapter_cls)
    else:
        ADAPTERS.append(adapter_cls)
    return adapter_cls


# Classes whose names look like attention but which are not token self-attention (timm's
# channel/spatial attention gates); the scan does not report them as unrecognised.
NON_ATTENTION: set[str] = {
    "ChannelAttn", "SpatialAttn", "LightChannelAttn", "LightSpatialAttn", "CbamModule", "LightCbamModule",
    "SplitAttn", "SelectiveKernelAttn", "CoordAttn", "SimpleCoordAttn", "StripAttn", "EfficientLocalAttn",
    "AttentionExtract",
}


def register_non_attention(module_cls: type[nn.Module] | str) -> None:
    """Tell the scan that modules of this class (or class name) are not self-attention.

    For modules with an attention-like name or ``q``/``k``-like children that are something
    else (e.g. a channel-attention gate): they are then neither initialised nor reported as
    unrecognised attention.
    """
    NON_ATTENTION.add(module_cls if isinstance(module_cls, str) else module_cls.__name__)


_NAME_HINTS = ("attention", "attn", "xca")
_FUSED_CHILDREN = {"qkv", "to_qkv", "c_attn", "Wqkv", "qkv_proj", "in_proj", "query_key_value"}
_SPLIT_CHILDREN = {"q", "k", "v", "kv", "q_proj", "k_proj", "v_proj", "kv_proj", "query", "key", "value",
                   "to_q", "to_k", "to_v", "to_kv"}


def looks_like_attention(module: nn.Module) -> bool:
    """Heuristic: an attention-like class name, or children laid out like q/k/v projections."""
    if type(module).__name__ in NON_ATTENTION:
        return False
    if any(hint in type(module).__name__.lower() for hint in _NAME_HINTS):
        return True
    children = {name for name, _ in module.named_children()}
    return bool(children & _FUSED_CHILDREN) or len(children & _SPLIT_CHILDREN) >= 2 or hasattr(
        module, "in_proj_weight"
    )


def _claim(model: nn.Module) -> list[tuple[str, AttentionAdapter]]:
    found: list[tuple[str, AttentionAdapter]] = []
    for name, module in model.named_modules():
        if any(_inside(name, prefix) for prefix, _ in found):
            continue  # inside a layer already found (e.g. MultiheadAttention.out_proj)
        for adapter in ADAPTERS:
            if adapter.matches(module):
                found.append((name, adapter(name or type(module).__name__, module)))
                break
    return found


def _inside(path: str, prefix: str) -> bool:
    """``path`` is ``prefix`` or a module under it ("" is the root, which holds everything)."""
    return prefix == "" or path == prefix or path.startswith(prefix + ".")


def find_attention_layers(model: nn.Module) -> list[AttentionAdapter]:
    """Every module of ``model`` an adapter claims, in module order (supported or not).

    Discovery only; :func:`scan_attention` says which of them can be initialised.
    """
    return [adapter for _, adapter in _claim(model)]


@dataclass
class AttentionScan:
    """What :func:`scan_attention` found: usable layers, refused layers, unrecognised modules."""

    model_name: str
    layers: list[AttentionAdapter] = field(default_factory=list)
    unsupported: list[tuple[str, str, str]] = field(default_factory=list)  # (path, class, why)
    unrecognised: list[tuple[str, str]] = field(default_factory=list)  # (path, class)

    @property
    def ok(self) -> bool:
        return not self.unsupported and not self.unrecognised

    def summary(self) -> dict:
        """JSON-ready: the layers found and the problems, for reports."""
        return {
            "layers": [layer.name for layer in self.layers],
            "unsupported": [{"module": p, "class": c, "why": w} for p, c, w in self.unsupported],
            "unrecognised": [{"module": p, "class": c} for p, c in self.unrecognised],
        }

    def problem_text(self) -> str:
        """The refusals and unrecognised modules, grouped by class and reason."""
        lines = []
        if self.unsupported:
            lines.append(f"{self.model_name}: these attention layers cannot take mimetic-style init as they are:")
            groups: dict[tuple[str, str], list[str]] = defaultdict(list)
            for path, cls, why in self.unsupported:
                groups[(cls, why)].append(path)
            for (cls, why), paths in groups.items():
                lines.append(f"  - {_paths_text(paths)} ({cls}): {why}")
        if self.unrecognised:
            lines.append(f"{self.model_name}: these modules look like attention but no adapter recognises them:")
            groups2: dict[str, list[str]] = defaultdict(list)
            for path, cls in self.unrecognised:
                groups2[cls].append(path)
            for cls, paths in groups2.items():
                lines.append(f"  - {_paths_text(paths)} ({cls})")
            lines.append(
                "  Register an adapter for them with mimetic.init.register_attention_adapter(YourAdapter) "
                "(a subclass of mimetic.init.AttentionAdapter; see mimetic.init.layers), or, if they are "
                "not self-attention, mimetic.init.register_non_attention(TheirClass)."
            )
        lines.append(f"Supported: {supported_layers_text()}. Nothing was changed.")
        return "\n".join(lines)

    def raise_if_problems(self) -> None:
        if not self.ok:
            raise InitError(self.problem_text())


def _paths_text(paths: list[str], show: int = 4) -> str:
    if len(paths) <= show:
        return ", ".join(paths)
    return f"{', '.join(paths[:show])} and {len(paths) - show} more"


def scan_attention(model: nn.Module, *, verify: bool = True) -> AttentionScan:
    """Sort the attention of ``model`` into usable layers, refused layers and unrecognised modules.

    ``verify`` probes each claimed layer's real forward with a few random float64 tokens
    (see :meth:`AttentionAdapter.verify`); it costs one small forward per layer and draws
    from a private generator.
    """
    scan = AttentionScan(model_name=type(model).__name__)
    claimed = _claim(model)
    for _, layer in claimed:
        why = layer.problem(verify=verify)
        if why is None:
            scan.layers.append(layer)
        else:
            scan.unsupported.append((layer.name, type(layer.module).__name__, why))
    claimed_paths = [path for path, _ in claimed]
    # Not inside a claimed layer, and not a container of one (a block holding an attention layer).
    candidates = [
        (name, module) for name, module in model.named_modules()
        if looks_like_attention(module)
        and not any(_inside(name, c) or _inside(c, name) for c in claimed_paths)
    ]
    paths = [name for name, _ in candidates]
    for name, module in candidates:
        if any(other != name and _inside(other, name) for other in paths):
            continue  # report the innermost module, not a block whose name also says "Attn"
        scan.unrecognised.append((name or type(module).__name__, type(module).__name__))
    return scan


def supported_layers_text() -> str:
    described = [a.description or a.__name__ for a in ADAPTERS]
    return "; ".join(described) + " (register another with mimetic.init.register_attention_adapter)"

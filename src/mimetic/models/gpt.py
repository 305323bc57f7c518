"""A small, readable causal GPT (nanoGPT-style) for language modelling.

Pre-norm blocks (``x + attn(ln_1(x))``, ``x + mlp(ln_2(x))``), fused ``c_attn`` (q, k, v in
that order) and ``c_proj`` as ``nn.Linear``, causal ``F.scaled_dot_product_attention``,
learned absolute positions, a final LayerNorm and an output head tied to the token
embedding. Weights follow GPT-2: N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 depth)),
zero biases. Mimetic init finds the attention through its ``gpt_c_attn`` adapter
(``mimetic.init.lm_layers``); nothing here knows about it.

Registered sizes (``model=...``):

* ``gpt_small``: the paper-scale config (the paper's exact LM could not be read): GPT-2 small's
  shape, width 768, 12 layers, 12 heads, context 512; with the 16k BPE vocab ~98 M parameters.
* ``gpt_micro``: the CPU proxy, width 64, 2 layers, 2 heads, context 64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mimetic.models.base import MODELS, DataSpec, ModelOption


@dataclass
class GPTOptions(ModelOption):
    """A causal GPT; ``block_size`` is the longest context (the size of the position table)."""

    dim: int = 768
    depth: int = 12
    heads: int = 12
    block_size: int = 512
    mlp_ratio: float = 4.0
    dropout: float = 0.0  # embeddings, residual branches
    attn_dropout: float = 0.0  # attention probabilities
    bias: bool = True
    tie_embeddings: bool = True

    def problems(self, group: str) -> list[str]:
        g, out = group, []
        if not (self.dim > 0 and self.depth > 0 and self.heads > 0 and self.block_size > 0):
            out.append(f"{g}.dim, {g}.depth, {g}.heads and {g}.block_size must be > 0")
        elif self.dim % self.heads:
            out.append(f"{g}.heads={self.heads} does not divide {g}.dim={self.dim}")
        if not self.mlp_ratio > 0:
            out.append(f"{g}.mlp_ratio must be > 0, got {self.mlp_ratio}")
        for key in ("dropout", "attn_dropout"):
            if not 0 <= getattr(self, key) < 1:
                out.append(f"{g}.{key} must be in [0, 1), got {getattr(self, key)}")
        return out


@dataclass
class GPTMicro(GPTOptions):
    """CPU-sized: width 64, 2 layers, 2 heads (head dim 32), context 64."""

    dim: int = 64
    depth: int = 2
    heads: int = 2
    block_size: int = 64


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with fused q/k/v (``c_attn``) and output projection (``c_proj``)."""

    def __init__(self, dim: int, heads: int, attn_dropout: float = 0.0, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.n_head, self.n_embd = heads, dim
        self.c_attn = nn.Linear(dim, 3 * dim, bias=bias)
        self.c_proj = nn.Linear(dim, dim, bias=bias)
        self.attn_dropout_p = attn_dropout
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        p = self.attn_dropout_p if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(b, t, c)))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.c_fc = nn.Linear(dim, hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, dim, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: GPTOptions):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.dim, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg.dim, cfg.heads, cfg.attn_dropout, cfg.dropout, cfg.bias)
        self.ln_2 = nn.LayerNorm(cfg.dim, bias=cfg.bias)
        self.mlp = MLP(cfg.dim, int(cfg.mlp_ratio * cfg.dim), cfg.dropout, cfg.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """``forward(idx)``: token ids (B, T) with T <= block_size -> next-token logits (B, T, vocab)."""

    def __init__(self, cfg: GPTOptions, vocab_size: int):
        super().__init__()
        self.block_size = cfg.block_size
        self.wte = nn.Embedding(vocab_size, cfg.dim)
        self.wpe = nn.Embedding(cfg.block_size, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.ln_f = nn.LayerNorm(cfg.dim, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.dim, vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.wte.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2: residual projections scaled by depth
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.depth))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.block_size:
            raise ValueError(f"sequence of {t} tokens is longer than model.block_size={self.block_size}")
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def build_gpt(cfg: GPTOptions, spec: DataSpec) -> GPT:
    problems = cfg.problems("model")
    if problems:
        raise ValueError("; ".join(problems))
    if not spec.vocab_size:
        raise ValueError(f"model={cfg.name} is a language model: it needs a token dataset (e.g. dataset=wikitext103)")
    return GPT(cfg, spec.vocab_size)


MODELS.add("gpt_small", GPTOptions, build_gpt, help="causal GPT, GPT-2 small shape (768 wide, 12x12, context 512)")
MODELS.add("gpt_micro", GPTMicro, build_gpt, help="CPU-sized causal GPT (64 wide, 2 layers, 2 heads, context 64)")

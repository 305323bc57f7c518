"""register_attention_adapter: a user's own attention class, initialised and measured like the built-ins."""

import math

import pytest
import torch
from torch import nn

from mimetic.init import (
    AttentionAdapter,
    InitError,
    attention_products,
    identity_plus_noise,
    mimetic_attention_,
    register_attention_adapter,
)
from mimetic.init import layers as layers_module


class TinyAttention(nn.Module):
    """Self-attention written the way many research repos do: separate to_q/to_k/to_v and out."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, return_attn: bool = False):
        b, n, c = x.shape
        h, hd = self.heads, c // self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, h, hd).transpose(1, 2)

        q, k, v = split(self.to_q(x)), split(self.to_k(x)), split(self.to_v(x))
        attn = (q @ k.transpose(-2, -1) / math.sqrt(hd)).softmax(-1)
        y = self.out((attn @ v).transpose(1, 2).reshape(b, n, c))
        return (y, attn) if return_attn else y


class TinyAttentionAdapter(AttentionAdapter):
    kind = "tiny"
    description = "TinyAttention (tests)"

    @staticmethod
    def matches(module: nn.Module) -> bool:
        return isinstance(module, TinyAttention)

    def __init__(self, name: str, module: TinyAttention):
        super().__init__(name, module)
        self.num_heads = module.heads
        self.head_dim = module.to_q.out_features // module.heads

    def q_weight(self):
        return self.module.to_q.weight

    def k_weight(self):
        return self.module.to_k.weight

    def v_weight(self):
        return self.module.to_v.weight

    def o_weight(self):
        return self.module.out.weight

    def attention_log_probs(self, queries, keys):
        assert queries is keys
        with torch.no_grad():
            _, attn = self._float64_copy()(queries.to(torch.float64)[None], return_attn=True)
        return attn[0].log()

    def value_path(self, values):
        with torch.no_grad():
            return self._float64_copy()(values.to(torch.float64)[:, None, :])[:, 0, :]


class SwappedAdapter(TinyAttentionAdapter):
    """A buggy adapter: queries and keys swapped. The probe must refuse it."""

    def q_weight(self):
        return self.module.to_k.weight

    def k_weight(self):
        return self.module.to_q.weight


class Net(nn.Module):
    def __init__(self, dim: int = 32, heads: int = 2, depth: int = 2):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList(TinyAttention(dim, heads) for _ in range(depth))

    def forward(self, x):
        for block in self.blocks:
            x = x + block(x)
        return x


@pytest.fixture
def adapters(monkeypatch):
    """A private copy of the adapter list, so registrations do not leak into other tests."""
    monkeypatch.setattr(layers_module, "ADAPTERS", list(layers_module.ADAPTERS))
    return layers_module.ADAPTERS


def best_rank_k(m: torch.Tensor, k: int) -> torch.Tensor:
    u, s, vh = torch.linalg.svd(m)
    return u[:, :k] @ torch.diag(s[:k]) @ vh[:k]


def test_unregistered_custom_attention_is_listed_not_skipped(adapters):
    with pytest.raises(InitError, match=r"blocks.0, blocks.1 \(TinyAttention\)[\s\S]*register_attention_adapter"):
        mimetic_attention_(Net())


def test_registered_adapter_is_initialised_and_measured(adapters):
    assert register_attention_adapter(TinyAttentionAdapter) is TinyAttentionAdapter
    assert adapters[0] is TinyAttentionAdapter
    model = Net(dim=32, heads=2, depth=2)
    assert len(mimetic_attention_(model, generator=torch.Generator().manual_seed(4))) == 2
    g = torch.Generator().manual_seed(4)  # replay the documented draw order
    for layer in attention_products(model):
        assert layer.kind == "tiny"
        for head in layer.qk:
            target = identity_plus_noise(32, 32, alpha=0.7, beta=0.7, generator=g)
            assert torch.allclose(head, best_rank_k(target, 16), atol=1e-5)
        vo_target = identity_plus_noise(32, 32, alpha=0.4, beta=-0.4, generator=g)
        assert torch.allclose(layer.vo, vo_target, atol=1e-5)


def test_registration_order_and_validation(adapters):
    register_attention_adapter(TinyAttentionAdapter, first=False)
    assert adapters[-1] is TinyAttentionAdapter
    register_attention_adapter(TinyAttentionAdapter)  # again: moves to the front, no duplicate
    assert adapters[0] is TinyAttentionAdapter and adapters.count(TinyAttentionAdapter) == 1
    with pytest.raises(TypeError, match="AttentionAdapter subclass"):
        register_attention_adapter(TinyAttention)


def test_a_buggy_adapter_is_refused_by_the_probe(adapters):
    register_attention_adapter(SwappedAdapter)
    model = Net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(InitError, match="attention logits its forward computes are not"):
        mimetic_attention_(model)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())

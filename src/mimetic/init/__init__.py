"""Mimetic initialization as a library: apply it to your own model.

    import torch, timm
    from mimetic.init import mimetic_attention_
    model = timm.create_model("vit_tiny_patch16_224", num_classes=10)
    layers = mimetic_attention_(model, generator=torch.Generator().manual_seed(0))  # the 12 layers it wrote

By name, as the ``init=`` config group does (the names are what :data:`INITS` holds):

    from mimetic.init import INITS, apply_init, diagnose_init, state_snapshot
    before = state_snapshot(model)
    report = apply_init(model, {"name": "mimetic", "alpha_qk": 0.5}, generator)
    diagnostics = diagnose_init(model, {"name": "mimetic", "alpha_qk": 0.5}, before)

Every problem a user can fix (a bad coefficient, a missing checkpoint, a model whose
attention the method cannot handle) raises :class:`InitError` with the fix in its message;
nothing is written when an init refuses.

Depthwise convolutions (``groups == in == out > 1``): :func:`depthwise_covariance_` (closed form,
``init=dw_covariance``) and :func:`depthwise_covariance_transfer_` (``init=dw_covariance_transfer``);
``init=<attention init>+<conv init>`` (e.g. ``mimetic+dw_covariance``) applies both.

Built-in adapters: ``torch.nn.MultiheadAttention``, timm ``Attention`` (ViT), GPT-2/nanoGPT
fused ``c_attn``/``c_proj`` (``nn.Linear`` or Hugging Face ``Conv1D``), Llama/OPT-style
``q_proj``/``k_proj``/``v_proj`` + ``o_proj``/``out_proj``, BERT-style ``self.query/key/value`` +
``output.dense`` (see :mod:`mimetic.init.lm_layers`; matched by structure, no ``transformers``
dependency).

Your own attention module: subclass :class:`AttentionAdapter` (how to find its q/k/v/o
weights, in ``nn.Linear``'s (out, in) layout, and how to probe its forward) and register it:

    from mimetic.init import AttentionAdapter, register_attention_adapter

    @register_attention_adapter
    class MyAttentionAdapter(AttentionAdapter):
        kind = "mine"

        @staticmethod
        def matches(module):
            return isinstance(module, MyAttention)

        def __init__(self, name, module):
            super().__init__(name, module)
            self.num_heads, self.head_dim = module.heads, module.dim // module.heads

        def q_weight(self): return self.module.to_q.weight
        def k_weight(self): return self.module.to_k.weight
        def v_weight(self): return self.module.to_v.weight
        def o_weight(self): return self.module.out.weight
        def attention_log_probs(self, queries, keys): ...  # (heads, Lq, Lk) from the real forward
        def value_path(self, values): ...                  # output for each token attended to alone

Every init and :func:`attention_products` then use it, after checking through the two
probes that the module computes the products its weights say. Modules that look like
attention but that no adapter claims make every attention init refuse, with their names.

Where things are: the method itself on plain tensors in :mod:`mimetic.init.factorize` (attention) and
:mod:`mimetic.init.covariance` (depthwise convs); faster factorisations in :mod:`mimetic.init.solvers`,
chosen by a ``solver=`` argument; the registry in :mod:`mimetic.init.base`; one file per family of inits
below, each registering its names (the list of families is the import block of this file).
"""

# The families: each init family registers its names with mimetic.init.base.INITS when imported (dispatch: the
# "default" init; composites: "<attention init>+<conv init>"), lm_layers its attention adapters.
from mimetic.init import (  # noqa: F401
    attention,
    composites,
    conv_filters,
    depthwise,
    dispatch,
    impulse,
    lm_layers,
    pretrained,
    simple,
)
from mimetic.init.attention import (
    PAPER_COEFFICIENTS,
    MimeticCoefficients,
    MimeticOptions,
    MimeticQKOptions,
    MimeticVOOptions,
    mimetic_attention_,
)
from mimetic.init.base import INITS, InitError
from mimetic.init.composites import register_composite_init
from mimetic.init.conv_filters import DwBoxOptions, DwImpulseOptions, depthwise_box_, depthwise_impulse_
from mimetic.init.covariance import empirical_covariance, gaussian_covariance
from mimetic.init.covariance_files import LayerCovariance, covariances_from_state, save_covariances
from mimetic.init.depthwise import (
    DepthwiseConv,
    DwCovarianceOptions,
    DwTransferOptions,
    depthwise_covariance_,
    depthwise_covariance_transfer_,
    find_depthwise_convs,
    learned_covariances,
)
from mimetic.init.diagnostics import (
    LayerProducts,
    apply_and_diagnose,
    attention_maps,
    attention_products,
    diagnose_init,
    product_stats,
    state_snapshot,
    summarize_products,
)
from mimetic.init.dispatch import DefaultOptions, apply_init, init_options
from mimetic.init.factorize import balanced_factors, identity_plus_noise
from mimetic.init.impulse import ImpulseOptions, impulse_attention_, impulse_diagnostics
from mimetic.init.layers import (
    AttentionAdapter,
    AttentionScan,
    find_attention_layers,
    register_attention_adapter,
    register_non_attention,
    scan_attention,
)
from mimetic.init.lm_layers import BertStyleAttention, FusedCAttnAttention, SeparateProjAttention
from mimetic.init.pretrained import PretrainedAttentionOptions, pretrained_attention_
from mimetic.init.simple import MimeticSimpleOptions, VONonzeroOptions, mimetic_simple_, vo_nonzero_
from mimetic.init.solvers import solver_names
from mimetic.init.sources import SourceModel, register_source_reader

#: Every registered init name (for code that imported the old hand-kept tuple; the registry is the source).
INIT_NAMES = tuple(INITS.names())

__all__ = [
    "INITS",
    "INIT_NAMES",
    "PAPER_COEFFICIENTS",
    "AttentionAdapter",
    "AttentionScan",
    "BertStyleAttention",
    "DefaultOptions",
    "DepthwiseConv",
    "DwBoxOptions",
    "DwCovarianceOptions",
    "DwImpulseOptions",
    "DwTransferOptions",
    "FusedCAttnAttention",
    "ImpulseOptions",
    "InitError",
    "LayerCovariance",
    "LayerProducts",
    "MimeticCoefficients",
    "MimeticOptions",
    "MimeticQKOptions",
    "MimeticSimpleOptions",
    "MimeticVOOptions",
    "PretrainedAttentionOptions",
    "SeparateProjAttention",
    "SourceModel",
    "VONonzeroOptions",
    "apply_and_diagnose",
    "apply_init",
    "attention_maps",
    "attention_products",
    "balanced_factors",
    "covariances_from_state",
    "depthwise_box_",
    "depthwise_covariance_",
    "depthwise_covariance_transfer_",
    "depthwise_impulse_",
    "diagnose_init",
    "empirical_covariance",
    "find_attention_layers",
    "find_depthwise_convs",
    "gaussian_covariance",
    "identity_plus_noise",
    "impulse_attention_",
    "impulse_diagnostics",
    "init_options",
    "learned_covariances",
    "mimetic_attention_",
    "mimetic_simple_",
    "pretrained_attention_",
    "product_stats",
    "register_attention_adapter",
    "register_composite_init",
    "register_non_attention",
    "register_source_reader",
    "save_covariances",
    "scan_attention",
    "solver_names",
    "state_snapshot",
    "summarize_products",
    "vo_nonzero_",
]

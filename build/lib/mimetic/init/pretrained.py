"""The paper's "pre-trained" reference point: attention weights copied from a trained ViT.

Only ``blocks.<i>.attn.qkv`` and ``blocks.<i>.attn.proj`` (weights and biases) are copied;
every other tensor keeps its fresh initialisation, so the comparison isolates what the
attention weights alone carry.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn

from mimetic.init.layers import TimmFusedAttention, find_attention_layers

_ATTN_KEY = re.compile(r"(?:^|\.)blocks\.(\d+)\.attn\.(qkv|proj)\.(weight|bias)$")
_CHECKPOINT_SUFFIXES = {".pth", ".pt", ".bin", ".safetensors", ".ckpt"}


def _unwrap(state: dict) -> dict[str, torch.Tensor]:
    """The tensor dict inside common checkpoint wrappers ({'model': ...}, {'state_dict': ...})."""
    for key in ("model", "state_dict", "model_state", "module"):
        if key in state and isinstance(state[key], dict):
            return _unwrap(state[key])
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _load_state_dict(source: str | Path) -> dict[str, torch.Tensor]:
    path = Path(source).expanduser()
    looks_like_file = path.suffix in _CHECKPOINT_SUFFIXES or "/" in str(source) or path.exists()
    if looks_like_file:
        if not path.is_file():
            raise FileNotFoundError(
                f"pretrained checkpoint not found: {path}. Pass an existing .pth/.safetensors file "
                "(e.g. init.checkpoint=/path/to/vit_tiny_patch16_224.safetensors) or a timm model name."
            )
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                return _unwrap(load_file(str(path)))
            return _unwrap(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as err:  # torch/safetensors raise many types for a bad file
            raise ValueError(f"could not read checkpoint {path}: {err}. Is the file complete?") from err
    try:
        import timm

        return timm.create_model(str(source), pretrained=True).state_dict()
    except Exception as err:
        raise RuntimeError(
            f"could not get pretrained weights for timm model '{source}': {err}. Without network access, "
            "download the weights elsewhere (e.g. timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k on the "
            "Hugging Face hub) and pass the local file path instead."
        ) from err


def pretrained_attention_(model: nn.Module, source: str | Path) -> int:
    """Copy the attention weights (qkv and proj, with biases) of a timm ViT checkpoint into ``model``.

    ``source`` is a local ``.pth``/``.safetensors`` file (plain state dict or wrapped in
    ``{'model': ...}``) or a timm model name (needs network). ``model`` must have the same
    width and depth. Returns the number of blocks copied. Raises ``FileNotFoundError`` for a
    missing file and ``ValueError`` for a checkpoint that does not fit the model.
    """
    state = _load_state_dict(source)
    blocks: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, tensor in state.items():
        match = _ATTN_KEY.search(key)
        if match:
            blocks[int(match.group(1))][f"{match.group(2)}.{match.group(3)}"] = tensor
    if not blocks:
        raise ValueError(f"{source} holds no ViT attention weights (keys like 'blocks.0.attn.qkv.weight')")

    layers = [layer for layer in find_attention_layers(model) if isinstance(layer, TimmFusedAttention)]
    if len(layers) != len(blocks):
        raise ValueError(
            f"depth mismatch: {source} has {len(blocks)} attention blocks, the model has {len(layers)}"
        )
    with torch.no_grad():
        for layer, index in zip(layers, sorted(blocks)):
            for name, tensor in sorted(blocks[index].items()):
                module_name, param_name = name.split(".")
                target = getattr(getattr(layer.module, module_name), param_name)
                if target is None:
                    raise ValueError(f"{layer.name}.{name}: the model has no such tensor but the checkpoint does")
                if tuple(target.shape) != tuple(tensor.shape):
                    raise ValueError(
                        f"shape mismatch for blocks.{index}.attn.{name}: checkpoint {tuple(tensor.shape)}, "
                        f"model {tuple(target.shape)}; use a model of the same width/depth as the checkpoint"
                    )
                target.copy_(tensor)
    return len(layers)

"""The paper's "pre-trained" reference point: attention weights copied from a trained ViT.

Only ``blocks.<i>.attn.qkv`` and ``blocks.<i>.attn.proj`` (weights and biases) are copied;
every other tensor keeps its fresh initialisation, so the comparison isolates what the
attention weights alone carry. The source must match the model in depth, shapes and, where the
source records it (a run directory's config, a timm name; a bare file cannot tell), head count.

The weights come from a local file, or from a timm model name when the Hugging Face hub
can be reached (or the weights are already in its local cache). Without network a timm
name fails within seconds, with the fix, instead of after timm's minute of retries.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlparse

import torch
from torch import nn

from mimetic.init.attention import attention_layers_or_raise
from mimetic.init.base import INITS, SCANNED, InitError
from mimetic.init.layers import AttentionAdapter, TimmFusedAttention, find_attention_layers
from mimetic.init.sources import source_model
from mimetic.registry import Option

_ATTN_KEY = re.compile(r"(?:^|\.)blocks\.(\d+)\.attn\.(qkv|proj)\.(weight|bias)$")
_CHECKPOINT_SUFFIXES = {".pth", ".pt", ".bin", ".safetensors", ".ckpt"}
_DOWNLOAD_HINT = (
    "download the weights on a machine with network (e.g. the model.safetensors of "
    "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k on the Hugging Face hub) and pass the local file: "
    "init.checkpoint=/path/to/model.safetensors"
)


@dataclass
class PretrainedAttentionOptions(Option):
    """``init=pretrained_attention``: ``checkpoint`` is a .pth/.safetensors file, a run directory of
    this project (its ``checkpoint.pt`` is read), or a timm model name."""

    touches_attention: ClassVar[bool] = True
    checkpoint: str | None = None

    def problems(self, group: str) -> list[str]:
        if self.checkpoint is None or not str(self.checkpoint).strip():
            return [f"{group}=pretrained_attention needs {group}.checkpoint=<.pth/.safetensors file or timm name>"]
        path = checkpoint_file(self.checkpoint)
        if path.is_dir():
            return [f"{group}.checkpoint={self.checkpoint} is a directory without {RUN_CHECKPOINT}; pass a run "
                    f"directory that has finished at least one checkpoint, or the checkpoint file itself"]
        looks_like_file = path.suffix in _CHECKPOINT_SUFFIXES or "/" in str(self.checkpoint)
        if looks_like_file and not path.is_file():
            return [f"{group}.checkpoint={self.checkpoint}: no such file. Pass an existing .pth/.safetensors file "
                    f"(e.g. {group}.checkpoint=/path/to/vit_tiny_patch16_224.safetensors) or a timm model name"]
        return []


RUN_CHECKPOINT = "checkpoint.pt"  # what a run directory of this project holds (mimetic.runtime.rundir)


def checkpoint_file(source: str | Path) -> Path:
    """``source`` as a path; a project run directory stands for the ``checkpoint.pt`` inside it."""
    path = Path(str(source)).expanduser()
    if path.is_dir() and (path / RUN_CHECKPOINT).is_file():
        return path / RUN_CHECKPOINT
    return path


def _unwrap(state: dict) -> dict[str, torch.Tensor]:
    """The tensor dict inside common checkpoint wrappers ({'model': ...}, {'state_dict': ...})."""
    for key in ("model", "state_dict", "model_state", "module"):
        if key in state and isinstance(state[key], dict):
            return _unwrap(state[key])
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _hub_endpoint() -> tuple[str, int]:
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_unreachable_reason(timeout: float = 2.0) -> str | None:
    """Why the Hugging Face hub cannot be used now (None: it can, as far as a TCP connect tells).

    Name resolution and connect both run in a daemon thread bounded by ``timeout``: a
    machine without DNS must not hang here either.
    """
    if _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE")):
        return "HF_HUB_OFFLINE is set"
    host, port = _hub_endpoint()
    result: list[str | None] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(None)
        except OSError as err:
            result.append(f"{host}:{port} cannot be reached ({type(err).__name__}: {err})")

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if not result:
        return f"{host}:{port} did not answer within {timeout:g} s"
    return result[0]


@contextlib.contextmanager
def _hub_offline() -> Iterator[None]:
    """Force huggingface_hub offline for the call: weights already cached still load, nothing retries."""
    saved_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    constants = None
    with contextlib.suppress(ImportError):
        from huggingface_hub import constants
    saved = getattr(constants, "HF_HUB_OFFLINE", None)
    try:
        if constants is not None:
            constants.HF_HUB_OFFLINE = True  # read at import time; is_offline_mode() reads this global
        yield
    finally:
        if constants is not None:
            constants.HF_HUB_OFFLINE = saved
        if saved_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = saved_env


def _timm_state_dict(name: str) -> dict[str, torch.Tensor]:
    import timm

    if not timm.is_model(name):
        raise InitError(
            f"pretrained checkpoint {name!r} is neither an existing file nor a timm model name; pass an "
            "existing .pth/.safetensors file (init.checkpoint=/path/to/vit_tiny_patch16_224.safetensors) "
            "or a timm name such as vit_tiny_patch16_224.augreg_in21k_ft_in1k"
        )
    offline = hub_unreachable_reason()
    try:
        if offline is None:
            return timm.create_model(name, pretrained=True).state_dict()
        with _hub_offline():  # only the local cache: fails at once when the weights are not there
            return timm.create_model(name, pretrained=True).state_dict()
    except Exception as err:
        if offline:
            why = f"the Hugging Face hub is not available ({offline}) and the weights are not in the local cache"
        else:
            why = f"timm could not load them ({type(err).__name__}: {err})"
        raise InitError(f"could not get pretrained weights for timm model {name!r}: {why}. {_DOWNLOAD_HINT}") from err


def _load_state_dict(source: str | Path) -> dict[str, torch.Tensor]:
    path = checkpoint_file(source)
    looks_like_file = path.suffix in _CHECKPOINT_SUFFIXES or "/" in str(source) or os.sep in str(source)
    if looks_like_file or path.exists():
        if not path.is_file():
            raise InitError(
                f"pretrained checkpoint not found: {path} (no such file). Pass an existing .pth/.safetensors file "
                "(e.g. init.checkpoint=/path/to/vit_tiny_patch16_224.safetensors) or a timm model name."
            )
        try:
            if path.suffix == ".safetensors":
                from safetensors.torch import load_file

                return _unwrap(load_file(str(path)))
            return _unwrap(torch.load(path, map_location="cpu", weights_only=True))
        except Exception as err:  # torch/safetensors raise many types for a bad file
            raise InitError(
                f"could not read checkpoint {path}: {type(err).__name__}: {err}. Is the file complete, and a "
                "PyTorch state dict or a safetensors file?"
            ) from err
    return _timm_state_dict(str(source))


def source_heads(source: str | Path, state: dict[str, torch.Tensor]) -> tuple[list[int], str] | None:
    """The head count of each attention block of the source, and where it is recorded; None if nowhere.

    A state dict cannot tell: a (3d, d) ``qkv`` weight fits any head count that divides d. What records it:
    a file whose architecture a registered source reader knows (:mod:`mimetic.init.sources`: the harness's
    reads a run directory's ``config.yaml``) and a timm model name (its architecture). A bare
    .pth/.safetensors file records nothing.
    """
    path = checkpoint_file(source)
    if path.is_file():
        known = source_model(path, state)  # None unless a reader knows the file
        model, where = (known.model, known.where) if known is not None else (None, "")
    else:
        import timm

        if not timm.is_model(str(source)):
            return None
        with torch.device("meta"):
            model = timm.create_model(str(source), pretrained=False)
        where = f"timm's {source}"
    if model is None:
        return None
    heads = [layer.num_heads for layer in find_attention_layers(model)]
    return (heads, where) if heads else None


def pretrained_attention_(model: nn.Module, source: str | Path) -> int:
    """Copy the attention weights (qkv and proj, with biases) of a timm ViT checkpoint into ``model``.

    ``source`` is a local ``.pth``/``.safetensors`` file (plain state dict or wrapped in
    ``{'model': ...}``, which includes this project's ``checkpoint.pt``), a run directory of
    this project (its ``checkpoint.pt``), or a timm model name (needs network or the local hub cache).
    ``model`` must have the same width and depth, and only timm attention layers. Returns
    the number of blocks copied. Raises :class:`InitError` for a missing or unreadable
    file, weights that cannot be fetched, or a checkpoint that does not fit the model.
    """
    return _copy_attention(attention_layers_or_raise(model), source)


def _copy_attention(layers: list[AttentionAdapter], source: str | Path) -> int:
    others = [layer for layer in layers if not isinstance(layer, TimmFusedAttention)]
    if others:
        raise InitError(
            f"pretrained_attention copies timm ViT blocks.<i>.attn.qkv/proj weights; {others[0].name} is a "
            f"{others[0].kind} attention layer ({type(others[0].module).__name__}), which it cannot fill"
        )
    state = _load_state_dict(source)
    blocks: dict[int, dict[str, torch.Tensor]] = defaultdict(dict)
    for key, tensor in state.items():
        match = _ATTN_KEY.search(key)
        if match:
            blocks[int(match.group(1))][f"{match.group(2)}.{match.group(3)}"] = tensor
    if not blocks:
        raise InitError(f"{source} holds no ViT attention weights (keys like 'blocks.0.attn.qkv.weight')")

    if len(layers) != len(blocks):
        raise InitError(
            f"depth mismatch: {source} has {len(blocks)} attention blocks, the model has {len(layers)}; "
            "use a model of the checkpoint's depth"
        )
    # Check every tensor before writing any, so a bad checkpoint leaves the model untouched.
    plan = []
    for layer, index in zip(layers, sorted(blocks)):
        for name, tensor in sorted(blocks[index].items()):
            module_name, param_name = name.split(".")
            target = getattr(getattr(layer.module, module_name), param_name)
            if target is None:
                raise InitError(
                    f"{layer.name}.{name}: the checkpoint has this tensor but the model does not "
                    "(e.g. qkv_bias=False in the model, True in the checkpoint)"
                )
            if tuple(target.shape) != tuple(tensor.shape):
                raise InitError(
                    f"shape mismatch for blocks.{index}.attn.{name}: checkpoint {tuple(tensor.shape)}, "
                    f"model {tuple(target.shape)}; use a model of the same width/depth as the checkpoint"
                )
            plan.append((target, tensor))
    # Same shapes, so the remaining question is how the width splits into heads.
    recorded = source_heads(source, state)
    if recorded is not None:
        heads, where = recorded
        for layer, theirs in zip(layers, heads):
            if theirs != layer.num_heads:
                raise InitError(
                    f"head mismatch: {source} was trained with {theirs} attention heads per block (the {where}), "
                    f"the model has {layer.num_heads} ({layer.name}). The same qkv/proj weights split into "
                    f"{layer.num_heads} heads compute other attention maps than the {theirs} they were trained "
                    f"as; use a model with {theirs} heads (model.heads={theirs})"
                )
    with torch.no_grad():
        for target, tensor in plan:
            target.copy_(tensor)
    return len(layers)


@INITS.register("pretrained_attention", PretrainedAttentionOptions,
                help="qkv and proj of every block copied from a trained timm ViT")
def _pretrained_attention(model: nn.Module, options: PretrainedAttentionOptions, generator: object = None) -> dict:
    layers = attention_layers_or_raise(model)
    return {"init": options.name, "layers": _copy_attention(layers, str(options.checkpoint)),
            "checkpoint": str(options.checkpoint), SCANNED: layers}

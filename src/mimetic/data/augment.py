"""Batched data augmentation on the accelerator, driven by an explicit ``torch.Generator``.

Per-sample randomness comes from one generator per epoch, so a run's data stream is a
pure function of (seed, epoch): a resumed run sees exactly the batches it would have
seen, and default/mimetic runs with equal seeds see the same images.

``randaug_cutout`` is the paper's recipe: random crop + flip, RandAugment (torchvision's
op set and magnitude bins, applied per sample by grouping samples that drew the same op),
then Cutout on the normalised image.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from mimetic.registry import Option, Registry

NUM_MAGNITUDE_BINS = 31  # torchvision's RandAugment default


def random_crop(x: torch.Tensor, padding: int, g: torch.Generator) -> torch.Tensor:
    """Zero-pad by ``padding`` and crop back to the original size at a random offset per sample."""
    if padding <= 0:
        return x
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=g, device=x.device)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=g, device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (b, h, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (b, 1, w)
    batch = torch.arange(b, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2).contiguous()


def random_flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=g, device=x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def cutout_(x: torch.Tensor, size: int, g: torch.Generator) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square (clipped at the border) at a random centre per sample."""
    if size <= 0:
        return x
    b, _, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=g, device=x.device)
    cx = torch.randint(0, w, (b,), generator=g, device=x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    top, left = (cy - size // 2)[:, None, None], (cx - size // 2)[:, None, None]
    inside = (ys >= top) & (ys < top + size) & (xs >= left) & (xs < left + size)
    return x.masked_fill_(inside[:, None], 0.0)


def _shear(axis: int) -> Callable[[torch.Tensor, float], torch.Tensor]:
    def op(img: torch.Tensor, m: float) -> torch.Tensor:
        shear = [0.0, 0.0]
        shear[axis] = math.degrees(math.atan(m))
        return TF.affine(img, angle=0.0, translate=[0, 0], scale=1.0, shear=shear,
                         interpolation=InterpolationMode.NEAREST, center=[0, 0])
    return op


def _translate(axis: int) -> Callable[[torch.Tensor, float], torch.Tensor]:
    def op(img: torch.Tensor, m: float) -> torch.Tensor:
        shift = [0, 0]
        shift[axis] = int(m)
        return TF.affine(img, angle=0.0, translate=shift, scale=1.0, shear=[0.0, 0.0],
                         interpolation=InterpolationMode.NEAREST)
    return op


@functools.lru_cache(maxsize=8)  # built once per image size, not once per batch
def randaugment_space(image_size: int) -> dict[str, tuple[torch.Tensor, bool, Callable]]:
    """torchvision's RandAugment ops: name -> (magnitude per bin, signed, op(img, magnitude))."""
    bins = NUM_MAGNITUDE_BINS
    lin = lambda hi: torch.linspace(0.0, hi, bins)  # noqa: E731
    none = torch.zeros(bins)
    return {
        "Identity": (none, False, lambda img, m: img),
        "ShearX": (lin(0.3), True, _shear(0)),
        "ShearY": (lin(0.3), True, _shear(1)),
        "TranslateX": (lin(150.0 / 331.0 * image_size), True, _translate(0)),
        "TranslateY": (lin(150.0 / 331.0 * image_size), True, _translate(1)),
        "Rotate": (lin(30.0), True, lambda img, m: TF.rotate(img, m, interpolation=InterpolationMode.NEAREST)),
        "Brightness": (lin(0.9), True, lambda img, m: TF.adjust_brightness(img, 1.0 + m)),
        "Color": (lin(0.9), True, lambda img, m: TF.adjust_saturation(img, 1.0 + m)),
        "Contrast": (lin(0.9), True, lambda img, m: TF.adjust_contrast(img, 1.0 + m)),
        "Sharpness": (lin(0.9), True, lambda img, m: TF.adjust_sharpness(img, 1.0 + m)),
        "Posterize": (8 - (torch.arange(bins) / ((bins - 1) / 4)).round(), False,
                      lambda img, m: TF.posterize(img, int(m))),
        "Solarize": (torch.linspace(255.0, 0.0, bins), False, lambda img, m: TF.solarize(img, m)),
        "AutoContrast": (none, False, lambda img, m: TF.autocontrast(img)),
        "Equalize": (none, False, lambda img, m: TF.equalize(img)),
    }


def randaugment(
    x: torch.Tensor, num_ops: int, magnitude: int, g: torch.Generator, *, sync_free: bool | None = None
) -> torch.Tensor:
    """RandAugment on a uint8 batch: each sample applies ``num_ops`` ops drawn uniformly.

    Two paths give the same images from the same draws:

    * grouped (the default on the CPU): samples that drew the same (op, sign) are transformed
      together, so a batch costs at most ``num_ops * 27`` batched calls on subsets of the batch;
      selecting a subset (``mask.any()``, ``x[mask]``) makes the host wait for the device, which
      costs nothing on the CPU;
    * sync-free (the default on an accelerator, ``sync_free=True`` anywhere): every op runs on the
      whole batch and ``torch.where`` keeps each sample's own result; geometric ops are gathers
      through index maps computed once per (image size, magnitude, device) and cached there. No
      step of it reads a value back to the host or copies host data to the device after warm-up.
    """
    if num_ops <= 0:
        return x
    sync_free = x.device.type != "cpu" if sync_free is None else sync_free
    space = randaugment_space(x.shape[-1])
    ops = list(space.values())
    magnitudes_now = _magnitudes(x.shape[-1], magnitude)
    x = x.clone()
    b = x.shape[0]
    for _ in range(num_ops):
        chosen = torch.randint(0, len(ops), (b,), generator=g, device=x.device)
        negate = torch.randint(0, 2, (b,), generator=g, device=x.device).bool()
        if sync_free:
            x = _apply_all(x, chosen, negate, magnitude)
            continue
        for index, (_, signed, op) in enumerate(ops):
            m = magnitudes_now[index]
            for sign in ((False, True) if signed else (None,)):
                mask = chosen == index
                if sign is not None:
                    mask = mask & (negate == sign)
                if not mask.any():
                    continue
                x[mask] = op(x[mask], -m if sign else m)
    return x


#: The geometric ops, done in the sync-free path as gathers through cached index maps.
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


@functools.lru_cache(maxsize=32)
def _magnitudes(image_size: int, magnitude: int) -> tuple[float, ...]:
    return tuple(float(m[magnitude]) for m, _, _ in randaugment_space(image_size).values())


@functools.lru_cache(maxsize=32)
def _index_maps(image_size: int, magnitude: int, device: torch.device) -> dict[tuple[str, bool], torch.Tensor]:
    """(op, negated) -> for each output pixel, 1 + the flat index of the source pixel it takes (0: filled with 0).

    Found by pushing an image of pixel numbers through torchvision's own op (nearest
    interpolation copies values exactly), so the gather reproduces the op bit for bit.
    """
    space = randaugment_space(image_size)
    numbers = (torch.arange(image_size * image_size, dtype=torch.float32) + 1).view(1, 1, image_size, image_size)
    maps = {}
    for name in GEOMETRIC:
        magnitudes, _, op = space[name]
        m = float(magnitudes[magnitude])
        for negated in (False, True):
            maps[name, negated] = op(numbers, -m if negated else m).round().long().flatten().to(device)
    return maps


def _geometric(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    flat = torch.cat((x.new_zeros(b, c, 1), x.reshape(b, c, h * w)), dim=2)
    return flat[:, :, index].view(b, c, h, w)


@functools.lru_cache(maxsize=8)
def _sharpness_kernel(device: torch.device) -> torch.Tensor:
    a, b = 1.0 / 13.0, 5.0 / 13.0  # torchvision's adjust_sharpness kernel, built once per device
    return torch.tensor([[a, a, a], [a, b, a], [a, a, a]], dtype=torch.float32, device=device)


def _sharpness(image: torch.Tensor, factor: float) -> torch.Tensor:
    """torchvision's ``adjust_sharpness`` on uint8, step for step, with its kernel cached on the device."""
    c = image.shape[-3]
    output = image.to(dtype=torch.float32, copy=True)
    blurred = torch.nn.functional.conv2d(output, _sharpness_kernel(image.device).expand(c, 1, 3, 3), groups=c)
    blurred = blurred.round_()
    view = output[..., 1:-1, 1:-1]
    view.add_(blurred.sub_(view), alpha=(1.0 - factor))
    return output.clamp_(0, 255).to(image.dtype)


def _autocontrast(image: torch.Tensor) -> torch.Tensor:
    """torchvision's ``autocontrast`` on uint8, step for step, with ``masked_fill`` for its boolean index_put."""
    float_image = image.to(torch.float32)
    minimum = float_image.amin(dim=(-2, -1), keepdim=True)
    maximum = float_image.amax(dim=(-2, -1), keepdim=True)
    flat = maximum == minimum
    inv_scale = maximum.sub_(minimum).mul_(1.0 / 255)
    minimum = minimum.masked_fill(flat, 0.0)
    inv_scale = inv_scale.masked_fill(flat, 1.0)
    return float_image.sub_(minimum).div_(inv_scale).clamp_(0, 255).to(image.dtype)


#: Ops whose torchvision kernel reads host data or indexes with a mask: replaced in the sync-free path.
_SYNC_FREE_OPS: dict[str, Callable[[torch.Tensor, float], torch.Tensor]] = {
    "Sharpness": lambda img, m: _sharpness(img, 1.0 + m),
    "AutoContrast": lambda img, m: _autocontrast(img),
}


def _apply_all(x: torch.Tensor, chosen: torch.Tensor, negate: torch.Tensor, magnitude: int) -> torch.Tensor:
    """One RandAugment round without host syncs: every op on the whole batch, each sample keeps its own."""
    space = randaugment_space(x.shape[-1])
    magnitudes_now = _magnitudes(x.shape[-1], magnitude)
    maps = _index_maps(x.shape[-1], magnitude, x.device)
    out = x
    for index, (name, (_, signed, op)) in enumerate(space.items()):
        if name == "Identity":
            continue
        m = magnitudes_now[index]
        for sign in ((False, True) if signed else (None,)):
            mask = chosen == index
            if sign is not None:
                mask = mask & (negate == sign)
            if name in GEOMETRIC:
                done = _geometric(x, maps[name, bool(sign)])
            else:
                done = _SYNC_FREE_OPS.get(name, op)(x, -m if sign else m)
            out = torch.where(mask[:, None, None, None], done, out)
    return out


class TrainTransform:
    """uint8 batch -> augmented, normalised float batch (what the model trains on).

    ``sync_free`` (None: on an accelerator only) picks RandAugment's path (see :func:`randaugment`);
    both give the same images. The normalisation statistics are moved to the batch's device once.
    """

    def __init__(self, cfg: Any, mean: torch.Tensor, std: torch.Tensor, *, sync_free: bool | None = None):
        self.cfg = cfg
        self.mean = mean.view(1, -1, 1, 1)
        self.std = std.view(1, -1, 1, 1)
        self.sync_free = sync_free
        self._stats: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _stats_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._stats:
            self._stats[device] = (self.mean.to(device), self.std.to(device))
        return self._stats[device]

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        cfg = self.cfg
        x = random_crop(x, cfg.crop_padding, g)
        if cfg.flip:
            x = random_flip(x, g)
        x = randaugment(x, cfg.randaug_ops, cfg.randaug_magnitude, g, sync_free=self.sync_free)
        x = normalize(x, *self._stats_on(x.device))
        return cutout_(x, cfg.cutout, g)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255.0 - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


# --------------------------------------------------------------------------- options
AUGS = Registry("aug")


@dataclass
class ImageAug(Option):
    """On-device image augmentation: crop + flip, RandAugment, Cutout (each can be switched off)."""

    crop_padding: int = 4  # zero padding before the random crop; 0 = no crop
    flip: bool = True  # random horizontal flip
    randaug_ops: int = 2  # RandAugment ops per image; 0 = no RandAugment
    randaug_magnitude: int = 9  # of torchvision's 31 bins (open choice: the paper does not state it)
    cutout: int = 16  # side of the Cutout square at the model's input size; 0 = no Cutout

    def problems(self, group: str) -> list[str]:
        out = []
        if self.crop_padding < 0 or self.cutout < 0 or self.randaug_ops < 0:
            out.append(f"{group}.crop_padding, {group}.cutout and {group}.randaug_ops must be >= 0")
        if not 0 <= self.randaug_magnitude < NUM_MAGNITUDE_BINS:
            out.append(f"{group}.randaug_magnitude must be in [0, {NUM_MAGNITUDE_BINS - 1}], "
                       f"got {self.randaug_magnitude}")
        return out


@dataclass
class BasicAug(ImageAug):
    """Crop + flip only."""

    randaug_ops: int = 0
    cutout: int = 0


@dataclass
class NoAug(ImageAug):
    """Nothing: the training images as they are (normalised)."""

    crop_padding: int = 0
    flip: bool = False
    randaug_ops: int = 0
    cutout: int = 0


AUGS.add("randaug_cutout", ImageAug, TrainTransform, help="the paper's RandAugment + Cutout (with crop + flip)")
AUGS.add("basic", BasicAug, TrainTransform, help="random crop + horizontal flip")
AUGS.add("none", NoAug, TrainTransform, help="no augmentation")

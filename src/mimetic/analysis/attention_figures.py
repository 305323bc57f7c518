"""Where one query patch attends: softmax attention maps of ViTs on real images.

The maps are read off the models' real forward (``mimetic.init.diagnostics.attention_maps``),
averaged over heads and over a batch of images, for one query token (the centre patch by
default) over the image's patches (prefix tokens such as the class token are left out, so a
map sums to a little under 1 where the query also attends to them).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mimetic.analysis.figures import pyplot
from mimetic.analysis.outputs import save_figure

NORMALISATIONS = ("train", "batch")


def image_batch(folder: Path, n: int = 8, image_size: int = 32, normalise: str = "train") -> torch.Tensor:
    """The first ``n`` test images of an image-folder dataset, as a model input (n, 3, H, W).

    ``normalise="train"`` uses the per-channel statistics of the training images, as training
    did (what a trained model expects); ``"batch"`` those of the ``n`` images themselves.
    """
    from mimetic.data import channel_statistics
    from mimetic.data.augment import normalize
    from mimetic.data.sources import load_image_folder

    if normalise not in NORMALISATIONS:
        raise ValueError(f"normalise={normalise!r}: choose one of {', '.join(NORMALISATIONS)}")
    data = load_image_folder(Path(folder), image_size=image_size)
    images = data.test.images[:n]
    if normalise == "batch":  # as the step-0 notebook has always computed it (its committed figure's inputs)
        pixels = images.float() / 255
        return (pixels - pixels.mean((0, 2, 3), keepdim=True)) / pixels.std((0, 2, 3), keepdim=True)
    return normalize(images, *channel_statistics(data.train.images))


def patch_grid(model: nn.Module) -> tuple[int, int]:
    """(rows, cols) of a timm ViT's patch grid, or of a torchvision ViT's (image_size // patch_size, square)."""
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is None and isinstance(getattr(model, "image_size", None), int) and getattr(model, "patch_size", 0):
        grid = (model.image_size // model.patch_size,) * 2  # torchvision: one class token, then the grid
    if grid is None:
        raise ValueError(f"{type(model).__name__} has no patch_embed.grid_size (timm) or image_size and "
                         "patch_size (torchvision): attention maps need a ViT")
    return int(grid[0]), int(grid[1])


def centre_query(model: nn.Module) -> int:
    """Token index of the centre patch (after the class / register tokens)."""
    rows, cols = patch_grid(model)
    return getattr(model, "num_prefix_tokens", 1) + (rows // 2) * cols + cols // 2


def query_attention(model: nn.Module, x: torch.Tensor, layers: list[int],
                    query: int | None = None) -> list[torch.Tensor]:
    """Per layer in ``layers``: the query token's attention over the patches, mean over heads and images."""
    from mimetic.init.diagnostics import attention_maps

    rows, cols = patch_grid(model)
    prefix = getattr(model, "num_prefix_tokens", 1)
    query = centre_query(model) if query is None else query
    maps = attention_maps(model, x)
    return [maps[layer][:, :, query, prefix:].mean(dim=(0, 1)).reshape(rows, cols) for layer in layers]


def plot_attention_maps(models: list[tuple[str, nn.Module]], x: torch.Tensor, layers: list[int], path: Path,
                        stamp: str, title: str, query: int | None = None, dpi: int = 100) -> None:
    """Rows: the models; columns: ``layers``. Each panel on its own colour scale, its peak in the title."""
    plt = pyplot()
    fig, axes = plt.subplots(len(models), len(layers), figsize=(3 * len(layers), 3 * len(models)), squeeze=False)
    try:
        for row, (name, model) in enumerate(models):
            q = centre_query(model) if query is None else query
            _, cols = patch_grid(model)
            qr, qc = divmod(q - getattr(model, "num_prefix_tokens", 1), cols)
            for col, (layer, attn) in enumerate(zip(layers, query_attention(model, x, layers, q))):
                ax = axes[row][col]
                ax.imshow(attn.numpy(), cmap="viridis")
                # The query patch, outlined: locality reads as brightness around the box.
                ax.add_patch(plt.Rectangle((qc - 0.5, qr - 0.5), 1, 1, fill=False, edgecolor="red", lw=1))
                # Own colour scale per panel: the peak tells how concentrated it is
                # (uniform attention over P patches would be 1/P everywhere).
                ax.set_title(f"{name}, layer {layer} (peak {attn.max():.3f})", fontsize=9)
                ax.axis("off")
        fig.suptitle(title)
        # Room for the title once the figure is tall (the two-row paper figure keeps its committed layout).
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / (3 * len(models))) if len(models) > 2 else None)
        save_figure(fig, path, stamp, dpi=dpi)
    finally:
        plt.close(fig)

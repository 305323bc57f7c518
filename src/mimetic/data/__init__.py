"""Datasets, registered by name with their typed options (``base.py`` holds the registry; each family
registers itself when listed here), the batched image augmentation, and the loader protocol."""

from mimetic.data import imagenet, images, tiny_imagenet, wikitext  # noqa: F401  (the families)
from mimetic.data.augment import AUGS
from mimetic.data.base import DATASETS, Data, DataRequest, build_data
from mimetic.data.images import ImageDataset, channel_statistics, in_memory_data
from mimetic.data.protocol import Loader

__all__ = ["AUGS", "DATASETS", "Data", "DataRequest", "ImageDataset", "Loader", "build_data", "channel_statistics",
           "in_memory_data"]

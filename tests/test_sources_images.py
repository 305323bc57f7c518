"""Image-folder reader: every PIL mode becomes correct 8-bit RGB, or a clear DatasetError.

Files are written on the fly in their real formats (16-bit PNG, TIFF, palette PNG, ...).
"""

from pathlib import Path

import numpy as np
import pytest
from fake_data import class_images, write_png16
from PIL import Image

from mimetic.data.sources import ALPHA_BACKGROUND, load_image_folder, to_rgb8
from mimetic.errors import DatasetError

CLASSES = ("cat", "dog")


def tree(root: Path, save, per_class: int = 3) -> dict[str, np.ndarray]:
    """root/{train,test}/<class>/<i>.<ext>, one 8-bit RGB reference image per file, handed to ``save``."""
    expected = {}
    for split in ("train", "test"):
        images, labels = class_images(per_class * len(CLASSES), len(CLASSES), size=16, seed=split == "test")
        for i, (img, label) in enumerate(zip(images, labels)):
            folder = root / split / CLASSES[label]
            folder.mkdir(parents=True, exist_ok=True)
            expected[f"{split}/{CLASSES[label]}/{i:04d}"] = save(folder / f"{i:04d}", img)
    return expected


def loaded(root: Path) -> dict[str, np.ndarray]:
    """Pixels the reader returns, keyed like ``tree``'s (HWC uint8)."""
    raw = load_image_folder(root, image_size=16)
    out = {}
    for split_name, split in (("train", raw.train), ("test", raw.test)):
        from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

        paths = [Path(p) for p, _ in make_dataset(str(root / split_name), {c: i for i, c in enumerate(CLASSES)},
                                                   extensions=IMG_EXTENSIONS)]
        for path, image in zip(paths, split.images):
            out[f"{split_name}/{path.parent.name}/{path.stem}"] = image.permute(1, 2, 0).numpy()
    return out


def test_16bit_greyscale_png_tree_loads_scaled_not_saturated(tmp_path):
    def save(stem, rgb):
        grey8 = rgb.mean(axis=2).round().astype(np.uint16)
        Image.fromarray((grey8 * 257).astype(np.uint16)).save(f"{stem}.png")  # a real 16-bit PNG
        return grey8.astype(np.uint8)

    expected = tree(tmp_path, save)
    with Image.open(next(tmp_path.glob("train/*/*.png"))) as probe:
        assert probe.mode == "I;16"  # what Pillow opens such a file as
    got = loaded(tmp_path)
    assert got.keys() == expected.keys()
    for key, grey in expected.items():
        assert np.array_equal(got[key], np.repeat(grey[..., None], 3, axis=2)), key
    everything = np.stack(list(got.values()))
    assert (everything == 255).mean() < 0.05  # Image.convert("RGB") alone gives ~100% white here


def test_16bit_colour_and_alpha_pngs_match_their_8bit_values(tmp_path):
    rng = np.random.default_rng(0)
    v8 = rng.integers(0, 256, (8, 8, 3))
    alpha8 = np.full((8, 8), 255)
    alpha8[:4] = 0
    cases = {
        "grey.png": (v8[..., 0], np.repeat(v8[..., :1], 3, axis=2)),
        "rgb.png": (v8, v8),
        "rgba.png": (np.dstack([v8, alpha8]), np.where(alpha8[..., None] == 255, v8, ALPHA_BACKGROUND)),
        "grey_alpha.png": (np.dstack([v8[..., 0], alpha8]),
                           np.where(alpha8[..., None] == 255, np.repeat(v8[..., :1], 3, axis=2), ALPHA_BACKGROUND)),
    }
    for name, (values8, want) in cases.items():
        values8 = np.asarray(values8)
        path = write_png16(tmp_path / name, values8 * 257 + 100 * (values8 < 255))  # not only multiples of 257
        with Image.open(path) as img:
            got = np.asarray(to_rgb8(img, path), dtype=int)
        assert got.shape == (8, 8, 3), name
        assert np.abs(got - want).max() <= 1, name  # 16-bit RGB arrives as its high byte: within 1 level


def test_modes_convert_to_the_right_rgb(tmp_path):
    rgb = np.array([[[10, 20, 30], [200, 100, 50]], [[0, 0, 0], [255, 255, 255]]], dtype=np.uint8)
    grey = np.array([[0, 64], [128, 255]], dtype=np.uint8)

    def roundtrip(img, name):
        img.save(tmp_path / name)
        with Image.open(tmp_path / name) as back:
            return np.asarray(to_rgb8(back, tmp_path / name), dtype=int)

    assert np.array_equal(roundtrip(Image.fromarray(grey), "l.png"), np.repeat(grey[..., None], 3, 2))
    bits = Image.fromarray(grey >= 128).convert("1")
    assert np.array_equal(roundtrip(bits, "one.png")[..., 0], np.where(grey >= 128, 255, 0))
    palette = Image.fromarray(rgb).quantize(4)
    assert np.array_equal(roundtrip(palette, "p.png"), rgb)
    cmyk = roundtrip(Image.fromarray(rgb).convert("CMYK"), "cmyk.tif")
    assert np.abs(cmyk - rgb).max() <= 1
    # Transparency: alpha 0 shows the background, whatever colour sits under it.
    rgba = np.dstack([rgb, np.array([[0, 255], [128, 255]], dtype=np.uint8)])
    got = roundtrip(Image.fromarray(rgba, "RGBA"), "rgba.png")
    assert got[0, 0].tolist() == list(ALPHA_BACKGROUND) and got[0, 1].tolist() == [200, 100, 50]
    assert np.abs(got[1, 0] - np.array(ALPHA_BACKGROUND) * 127 / 255).max() <= 1  # half-transparent black
    la = roundtrip(Image.fromarray(np.dstack([grey, np.array([[0, 255], [255, 255]], np.uint8)]), "LA"), "la.png")
    assert la[0, 0].tolist() == list(ALPHA_BACKGROUND) and la[1, 1].tolist() == [255, 255, 255]
    assert la[0, 1].tolist() == [64, 64, 64]
    # Palette image whose colour 0 (black here) is transparent.
    pal = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8), "P")
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    pal.info["transparency"] = 0
    got = roundtrip(pal, "p_transparent.png")
    assert got[0, 0].tolist() == list(ALPHA_BACKGROUND) and got[0, 1].tolist() == [10, 200, 30]
    floats = roundtrip(Image.fromarray((grey / 255.0).astype(np.float32), "F"), "f.tif")
    assert np.array_equal(floats[..., 1], grey)


def test_modes_without_a_defined_white_level_are_refused(tmp_path):
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(tmp_path / "i32.tif")
    with Image.open(tmp_path / "i32.tif") as img, pytest.raises(DatasetError, match="i32.tif.*mode 'I'"):
        to_rgb8(img, tmp_path / "i32.tif")
    Image.fromarray(np.array([[0.0, 3.5]], dtype=np.float32)).save(tmp_path / "f.tif")
    with Image.open(tmp_path / "f.tif") as img, pytest.raises(DatasetError, match=r"f.tif.*\[0, 3.5\]"):
        to_rgb8(img, tmp_path / "f.tif")


def test_reader_stops_at_a_refused_file_with_its_path(tmp_path):
    def save(stem, rgb):
        Image.fromarray(rgb).save(f"{stem}.png")
        return rgb

    tree(tmp_path, save)
    bad = tmp_path / "train" / "dog" / "9999.tif"
    Image.fromarray(np.array([[0.0, 2.0]], dtype=np.float32)).save(bad)
    with pytest.raises(DatasetError, match="9999.tif"):
        load_image_folder(tmp_path, image_size=16)

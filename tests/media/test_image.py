"""`transformers_av.media.image`: one image as (H, W, 3) uint8 RGB from files, bytes, PIL images, arrays, tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch


from PIL import Image  # noqa: E402

from transformers_av.media import MediaDecodeError, load_image  # noqa: E402
from transformers_av.synthetic.media import make_frames  # noqa: E402


def test_load_image(tmp_path):
    rgb = make_frames(1, 12, 16)[0]
    png = tmp_path / "img.png"
    Image.fromarray(rgb).save(png)
    np.testing.assert_array_equal(load_image(png), rgb)
    np.testing.assert_array_equal(load_image(str(png)), rgb)
    np.testing.assert_array_equal(load_image(png.read_bytes()), rgb)
    np.testing.assert_array_equal(load_image(Image.fromarray(rgb).convert("RGBA")), rgb)
    np.testing.assert_array_equal(load_image(torch.from_numpy(rgb).permute(2, 0, 1)), rgb)
    np.testing.assert_array_equal(load_image(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])), rgb)
    grey = load_image(rgb[..., 0])
    assert grey.shape == (12, 16, 3) and (grey[..., 2] == rgb[..., 0]).all()
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(MediaDecodeError, match="bad.png"):
        load_image(bad)
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "none.png")
    with pytest.raises(TypeError):
        load_image(rgb.astype(np.float32))


def _palette_with_transparency() -> Image.Image:
    image = Image.new("P", (3, 2), 1)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0, 0, 0] * 254)  # entry 0 red, entry 1 green
    image.info["transparency"] = 1  # green is the transparent entry (what a GIF / PNG with tRNS holds)
    return image


def _cms_lab_to_srgb(image: Image.Image) -> np.ndarray:
    from PIL import ImageCms

    transform = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"), "LAB", "RGB")
    return np.array(ImageCms.applyTransform(image, transform))[0, 0]


# (mode, image, expected RGB of every pixel). Scales: 16-bit 0..65535 and float 0..1 map to 0..255.
MODES = {
    "I;16": (lambda: Image.fromarray(np.full((2, 3), 40000, np.uint16)), (156, 156, 156)),  # 40000 / 65535 * 255
    "I;16B": (lambda: Image.frombytes("I;16B", (3, 2), np.full(6, 40000, ">u2").tobytes()), (156, 156, 156)),
    "I": (lambda: Image.fromarray(np.full((2, 3), 40000, np.int32)), (156, 156, 156)),
    "F": (lambda: Image.fromarray(np.full((2, 3), 0.25, np.float32)), (64, 64, 64)),  # 0.25 * 255 = 63.75
    "1": (lambda: Image.new("1", (3, 2), 1), (255, 255, 255)),
    "L": (lambda: Image.new("L", (3, 2), 77), (77, 77, 77)),
    "LA": (lambda: Image.new("LA", (3, 2), (90, 10)), (90, 90, 90)),  # alpha dropped, colour kept
    "La": (lambda: Image.new("La", (3, 2), (50, 128)), (99, 99, 99)),  # premultiplied: 50 * 255 / 128, floored
    "P+transparency": (_palette_with_transparency, (0, 255, 0)),
    "PA": (lambda: Image.new("PA", (3, 2), (0, 40)), (0, 0, 0)),  # default palette entry 0 is black
    "RGBA": (lambda: Image.new("RGBA", (3, 2), (10, 20, 30, 0)), (10, 20, 30)),
    "RGBa": (lambda: Image.new("RGBa", (3, 2), (100, 50, 0, 128)), (199, 99, 0)),
    "RGBX": (lambda: Image.new("RGBX", (3, 2), (1, 2, 3, 255)), (1, 2, 3)),
    "CMYK": (lambda: Image.new("CMYK", (3, 2), (0, 255, 255, 0)), (255, 0, 0)),  # no cyan, full magenta + yellow
    "YCbCr": (lambda: Image.new("YCbCr", (3, 2), (76, 85, 255)), (254, 0, 0)),  # JPEG's red, rounded
    "HSV": (lambda: Image.new("HSV", (3, 2), (85, 255, 255)), (0, 255, 0)),  # hue 120 degrees
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_pil_mode_keeps_its_scale(mode, recwarn):
    make, expected = MODES[mode]
    image = make()
    out = load_image(image)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert (out == np.array(expected, np.uint8)).all(), (mode, out[0, 0])
    assert not [w for w in recwarn if "Transparency" in str(w.message)]  # no Pillow palette warning either


def test_lab_matches_littlecms():
    image = Image.new("LAB", (1, 1), (140, 170, 90))
    np.testing.assert_array_equal(load_image(image)[0, 0], _cms_lab_to_srgb(image))


def test_sixteen_bit_png_file(tmp_path):
    """The issue's case: a 16-bit grey PNG of 40000 / 65535 read from disk is 156 (not 255, Pillow's clipping)."""
    values = np.array([[0, 257, 40000], [65535, 32768, 1000]], np.uint16)
    path = tmp_path / "depth.png"
    Image.fromarray(values).save(path)
    out = load_image(path)
    np.testing.assert_array_equal(out[..., 0], [[0, 1, 156], [255, 128, 4]])
    assert (out[..., 0] == out[..., 2]).all()


def test_array_dtype_hints():
    with pytest.raises(TypeError, match=r"uint16.*\(x / 257\)\.round\(\)"):
        load_image(np.zeros((2, 2, 3), np.uint16))
    with pytest.raises(TypeError, match=r"float32.*\(x \* 255\)\.round\(\)"):
        load_image(np.zeros((2, 2, 3), np.float32))

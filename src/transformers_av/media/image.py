"""Load one image as ``(H, W, 3)`` uint8 RGB, from a file, a URL, a buffer, a PIL image or an array (Pillow imported
lazily).

Every Pillow mode keeps its scale (`pil_to_rgb`): 16-bit grey (``I;16``, ``I;16B``, ... and ``I``, the mode Pillow
gives 16-bit PNG / TIFF samples) maps ``0 .. 65535`` to ``0 .. 255``; 32-bit float (``F``) maps ``0.0 .. 1.0`` to
``0 .. 255``; both round to nearest and clip. Modes with alpha (``RGBA``, ``LA``, ``PA``, palette images with a
transparent colour) and the premultiplied ones (``RGBa``, ``La``) keep their colour and drop the alpha; ``1``, ``L``,
``P``, ``CMYK``, ``YCbCr``, ``HSV`` and ``LAB`` go through Pillow's own conversion to RGB.

`load_video` also reads a list of frames through `load_image`, so frames given one by one follow the same rules.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from .errors import MediaDecodeError, describe_source
from .remote import downloaded
from .sources import check_file, is_encoded, is_path, is_torch_tensor

__all__ = ["load_image", "pil_to_rgb", "uint8_hint"]

#: Pillow's 16-bit grey modes (native, little- and big-endian).
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
#: Modes whose colour Pillow converts through RGBA (alpha, premultiplied alpha, palette transparency).
_THROUGH_RGBA = ("RGBa", "PA")
_THROUGH_LA = ("La",)


def uint8_hint(dtype: np.dtype) -> str:
    """How to turn an array of `dtype` into uint8 pixels, for error messages (empty when there is no usual way)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint16:
        return " (16-bit pixels: convert with (x / 257).round().astype(np.uint8))"
    if np.issubdtype(dtype, np.floating):
        return " (float pixels in [0, 1]: convert with (x * 255).round().astype(np.uint8))"
    return ""


def pil_to_rgb(image) -> np.ndarray:
    """A PIL image of any mode as ``(H, W, 3)`` uint8 RGB, each mode on its own scale (see the module docstring)."""
    mode = image.mode
    if mode in _SIXTEEN_BIT_MODES or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        scale = 255.0 if mode == "F" else 255.0 / 65535.0
        grey = np.clip(np.rint(values * scale), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if mode in _THROUGH_RGBA or (mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")  # un-premultiplies RGBa; resolves the palette's transparent entry
    elif mode in _THROUGH_LA:
        image = image.convert("LA")
    return np.array(image.convert("RGB"), dtype=np.uint8)


def load_image(source: Any) -> np.ndarray:
    """Load an image as ``(H, W, 3)`` uint8 RGB.

    ``source``: a path / ``http(s)://`` URL / bytes / file-like (any format Pillow reads; EXIF orientation applied,
    any mode converted on its own scale, alpha dropped, grey expanded), a PIL image (any mode), a numpy array
    ``(H, W, 3)`` / ``(H, W, 4)`` / ``(H, W)`` uint8, or a torch tensor ``(3, H, W)`` / ``(H, W, 3)`` uint8.

    Raises:
        FileNotFoundError: a path that does not exist.
        MediaDecodeError: a file or buffer Pillow cannot read.
        TypeError / ValueError: an input of another type, dtype or shape.
    """
    if is_encoded(source):
        with downloaded(source) as local:
            return _decode_image(local)
    if type(source).__module__.startswith("PIL.") and hasattr(source, "convert"):
        return pil_to_rgb(source)
    if is_torch_tensor(source):
        array = source.detach().cpu().numpy()
        if array.ndim == 3 and array.shape[0] in (1, 3, 4) and array.shape[-1] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)
        source = array
    if isinstance(source, np.ndarray):
        return _rgb_array(source)
    raise TypeError(
        f"load_image expects a path, bytes, a file-like object, a PIL image, a uint8 array or a torch tensor, got "
        f"{type(source).__name__}"
    )


def _decode_image(source: Any) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = describe_source(source)
    if is_path(source):
        target: Any = str(check_file(source))
    elif isinstance(source, (bytes, bytearray, memoryview)):
        target = io.BytesIO(bytes(source))
    else:
        target = source
    try:
        with Image.open(target) as image:
            return pil_to_rgb(ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise MediaDecodeError(f"Cannot read the image {name}: {error}") from error


def _rgb_array(array: np.ndarray) -> np.ndarray:
    """A uint8 ``(H, W, 3)`` / ``(H, W, 4)`` / ``(H, W)`` / ``(H, W, 1)`` array as an ``(H, W, 3)`` RGB copy."""
    shape = array.shape
    if array.dtype != np.uint8:
        raise TypeError(f"Image arrays must be uint8 RGB, got dtype {array.dtype}{uint8_hint(array.dtype)}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"An image array must be (H, W, 3), (H, W, 4) or (H, W), got shape {shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"The image is empty: shape {shape}")
    return np.array(array[..., :3], dtype=np.uint8, copy=True)

"""Load one image as ``(H, W, 3)`` uint8 RGB, from a file, a buffer, a PIL image or an array (Pillow imported lazily).

`load_video` also reads a list of frames through `load_image`, so frames given one by one follow the same rules.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from .errors import MediaDecodeError, describe_source
from .sources import check_file, is_encoded, is_path, is_torch_tensor

__all__ = ["load_image"]


def load_image(source: Any) -> np.ndarray:
    """Load an image as ``(H, W, 3)`` uint8 RGB.

    ``source``: a path / bytes / file-like (any format Pillow reads; EXIF orientation applied, alpha dropped, grey
    expanded), a PIL image, a numpy array ``(H, W, 3)`` / ``(H, W, 4)`` / ``(H, W)`` uint8, or a torch tensor
    ``(3, H, W)`` / ``(H, W, 3)`` uint8.

    Raises:
        FileNotFoundError: a path that does not exist.
        MediaDecodeError: a file or buffer Pillow cannot read.
        TypeError / ValueError: an input of another type, dtype or shape.
    """
    if is_encoded(source):
        return _decode_image(source)
    if type(source).__module__.startswith("PIL.") and hasattr(source, "convert"):
        return np.array(source.convert("RGB"), dtype=np.uint8)
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
            image = ImageOps.exif_transpose(image)
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise MediaDecodeError(f"Cannot read the image {name}: {error}") from error


def _rgb_array(array: np.ndarray) -> np.ndarray:
    """A uint8 ``(H, W, 3)`` / ``(H, W, 4)`` / ``(H, W)`` / ``(H, W, 1)`` array as an ``(H, W, 3)`` RGB copy."""
    shape = array.shape
    if array.dtype != np.uint8:
        raise TypeError(f"Image arrays must be uint8 RGB, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(f"An image array must be (H, W, 3), (H, W, 4) or (H, W), got shape {shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"The image is empty: shape {shape}")
    return np.array(array[..., :3], dtype=np.uint8, copy=True)

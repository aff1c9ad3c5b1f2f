"""`transformers_av.media.image`: one image as (H, W, 3) uint8 RGB from files, bytes, PIL images, arrays, tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("PIL")

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

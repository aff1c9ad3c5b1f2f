"""Frame preprocessing of FAVOR / video-SALMONN: scale to [0, 1], resize (bicubic), CLIP mean/std."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class FavorImageProcessor(BaseImageProcessor):
    r"""
    Turns video frames or images into the ViT input: (T, 3, size, size) float tensors.

    The official code resizes with `torch.nn.functional.interpolate(mode="bicubic", align_corners=False)` without
    antialiasing and without clamping (values may overshoot [0, 1] before normalisation); the defaults reproduce that
    exactly, so a converted checkpoint sees the pixels it was trained on.

    Args:
        size (`int`, defaults to 224): output height and width.
        resample (`str`, defaults to `"bicubic"`): any `interpolate` mode ("bilinear", "bicubic", ...).
        antialias (`bool`, defaults to `False`): antialias when downscaling.
        image_mean, image_std: normalisation (CLIP's by default).
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        size: int = 224,
        resample: str = "bicubic",
        antialias: bool = False,
        image_mean: Sequence[float] = CLIP_MEAN,
        image_std: Sequence[float] = CLIP_STD,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.size = int(size)
        self.resample = resample
        self.antialias = antialias
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)

    def preprocess_frames(self, frames) -> torch.FloatTensor:
        """(T, H, W, 3) uint8 frames (numpy, torch, or a list of PIL images / arrays) -> (T, 3, size, size)."""
        frames = _as_uint8_frames(frames)
        pixels = frames.permute(0, 3, 1, 2).float() / 255.0  # (T, 3, H, W)
        pixels = torch.nn.functional.interpolate(
            pixels,
            size=(self.size, self.size),
            mode=self.resample,
            align_corners=False if self.resample in ("bilinear", "bicubic") else None,
            antialias=self.antialias,
        )
        mean = torch.tensor(self.image_mean).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std).view(1, 3, 1, 1)
        return (pixels - mean) / std

    def preprocess(self, images, return_tensors=None, **kwargs) -> BatchFeature:
        return BatchFeature({"pixel_values": self.preprocess_frames(images)}, tensor_type=return_tensors)


def _as_uint8_frames(frames) -> torch.Tensor:
    if isinstance(frames, (list, tuple)):
        frames = np.stack([np.asarray(frame.convert("RGB") if hasattr(frame, "convert") else frame) for frame in frames])
    frames = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (T, H, W, 3) (RGB, channels last), got {tuple(frames.shape)}.")
    if frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 (0..255), got {frames.dtype}.")
    return frames


__all__ = ["FavorImageProcessor", "CLIP_MEAN", "CLIP_STD"]

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
        do_rescale (`bool`, defaults to `True`), rescale_factor (`float`, defaults to `1 / 255`): scale the uint8
            values before resizing.
        do_normalize (`bool`, defaults to `True`), image_mean, image_std: normalisation (CLIP's by default).

    Each setting can be overridden for one call (`preprocess_frames(frames, do_normalize=False)`, or through a
    processor call's `images_kwargs` / `videos_kwargs`).
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        size: int = 224,
        resample: str = "bicubic",
        antialias: bool = False,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Sequence[float] = CLIP_MEAN,
        image_std: Sequence[float] = CLIP_STD,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.size = int(size)
        self.resample = resample
        self.antialias = antialias
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)

    def preprocess_frames(
        self,
        frames,
        *,
        size: int | dict | None = None,
        resample: str | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: Sequence[float] | float | None = None,
        image_std: Sequence[float] | float | None = None,
        out: torch.Tensor | None = None,
        **ignored,
    ) -> torch.FloatTensor:
        """(T, H, W, 3) uint8 frames (numpy, torch, or a list of PIL images / arrays) -> (T, 3, size, size). Settings
        given here override the processor's for this call; other image keywords (`do_resize`, ...) do not apply to
        this fixed pipeline and are ignored. `out`: a float32 (T, 3, size, size) tensor to write the pixels into
        (returned); frames already at the output size are not resized (bicubic, bilinear and nearest resampling at
        scale 1 return their input unchanged)."""
        size = self.size if size is None else _square_size(size)
        resample = self.resample if resample is None else resample
        rescale_factor = self.rescale_factor if rescale_factor is None else rescale_factor
        frames = _as_uint8_frames(frames)
        do_rescale = self.do_rescale if do_rescale is None else do_rescale
        shape = (len(frames), 3, size, size)
        if out is None:
            pixels = torch.empty(shape, dtype=torch.float32)
        elif tuple(out.shape) != shape or out.dtype != torch.float32:
            raise ValueError(f"`out` must be a float32 tensor of shape {shape}, got {out.dtype} {tuple(out.shape)}.")
        else:
            pixels = out
        normalize = self.do_normalize if do_normalize is None else do_normalize
        if normalize:
            mean = torch.tensor(self.image_mean if image_mean is None else image_mean, dtype=torch.float32)
            std = torch.tensor(self.image_std if image_std is None else image_std, dtype=torch.float32)
            mean, std = mean.reshape(-1, 1, 1), std.reshape(-1, 1, 1)
        resize = tuple(frames.shape[1:3]) != (size, size)
        # One frame at a time through reused contiguous buffers, normalised in place in its output row: converting
        # the whole batch at once (`frames.permute(0, 3, 1, 2).float() / 255`) allocates two full-resolution float
        # copies and interpolates from a channels-last one, ~3x slower; a frame's buffers stay in cache. The frame
        # is made channels-first while still uint8 (a quarter of the bytes to shuffle), then converted to float in
        # one contiguous pass. Same operations in the same order on each value, so the pixels are bit-identical.
        channels_first = torch.empty((1, 3, *frames.shape[1:3]), dtype=torch.uint8)
        frame_buffer = torch.empty((1, 3, *frames.shape[1:3]), dtype=torch.float32) if resize else None
        for index in range(len(frames)):
            row = pixels[index : index + 1]
            target = frame_buffer if resize else row
            channels_first.copy_(frames[index : index + 1].permute(0, 3, 1, 2))
            target.copy_(channels_first)
            if do_rescale:
                # the official code divides by 255: the default keeps its pixels bit-identical
                if rescale_factor == 1 / 255:
                    target.div_(255.0)
                else:
                    target.mul_(rescale_factor)
            if resize:
                row.copy_(torch.nn.functional.interpolate(
                    frame_buffer,
                    size=(size, size),
                    mode=resample,
                    align_corners=False if resample in ("bilinear", "bicubic") else None,
                    antialias=self.antialias,
                ))
            if normalize:
                row.sub_(mean).div_(std)
        return pixels

    def output_size(self, size: int | dict | None = None) -> int:
        """The side of the square frames `preprocess_frames` returns (for a call's `size` override, if any)."""
        return self.size if size is None else _square_size(size)

    def preprocess(self, images, return_tensors=None, **kwargs) -> BatchFeature:
        return BatchFeature({"pixel_values": self.preprocess_frames(images, **kwargs)}, tensor_type=return_tensors)


def _square_size(size: int | dict) -> int:
    """An output side from transformers' `size` forms: an int, or a dict with equal `height` and `width` or a
    `shortest_edge`."""
    if isinstance(size, int):
        return size
    if "height" in size and "width" in size and size["height"] == size["width"]:
        return int(size["height"])
    if "shortest_edge" in size:
        return int(size["shortest_edge"])
    raise ValueError(f"FavorImageProcessor makes square frames: `size` must be an int or a square, got {size!r}.")


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

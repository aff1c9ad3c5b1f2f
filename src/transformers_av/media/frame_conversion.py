"""What `load_video` stores for each kept frame: RGB uint8 (optionally downscaled), then the caller's transform.

The processors pass their image preprocessing as the transform, so a long high-resolution video never holds its
sampled frames at full resolution: each kept frame is converted as soon as the sampler picks it, one by one
(``frame_transform``) or in small batches (``frames_transform``, faster; at most ``batch_size`` full-resolution frames
wait at once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .arguments import optional_count

__all__ = ["FrameConverter", "frame_to_rgb"]


def frame_to_rgb(frame: Any, size: tuple[int, int] | None) -> np.ndarray:
    """One decoded frame (PyAV ``VideoFrame`` or an ``(H, W, 3)`` array) -> ``(H, W, 3)`` uint8, resized if asked."""
    if isinstance(frame, np.ndarray):
        if size is None or frame.shape[:2] == size:
            return np.array(frame, dtype=np.uint8, copy=True)
        from PIL import Image

        return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.Resampling.BILINEAR))
    if size is None:
        return frame.to_ndarray(format="rgb24")
    # swscale area averaging: a good, cheap downscaler
    return frame.reformat(width=size[1], height=size[0], format="rgb24", interpolation="AREA").to_ndarray()


class _PendingFrame:
    """A kept frame whose batched transform has not run yet."""

    __slots__ = ("value",)

    def __init__(self):
        self.value = None


class FrameConverter:
    """Called on each kept frame as it is decoded; `stack` then gives the clip's frames.

    Args:
        size: ``(height, width)`` to downscale to right away, or ``None``.
        frame_transform: applied to each ``(H, W, 3)`` uint8 frame.
        frames_transform: applied to ``(k, H, W, 3)`` batches of up to ``batch_size`` frames (give one of the two).
        batch_size: frames per ``frames_transform`` call.
    """

    def __init__(
        self,
        size: tuple[int, int] | None,
        frame_transform: Callable[[np.ndarray], np.ndarray] | None = None,
        frames_transform: Callable[[np.ndarray], np.ndarray] | None = None,
        batch_size: int = 16,
    ):
        if frame_transform is not None and frames_transform is not None:
            raise ValueError("give frame_transform or frames_transform, not both")
        self.size = size
        self.frame_transform = frame_transform
        self.frames_transform = frames_transform
        if frames_transform is not None:
            batch_size = optional_count(batch_size, "transform_batch_size") or 1
        self.batch_size = batch_size
        self._pending: list[tuple[_PendingFrame, np.ndarray]] = []

    def __call__(self, frame: Any) -> Any:
        """The stored form of one frame; with ``frames_transform``, a placeholder that `stack` fills."""
        rgb = frame_to_rgb(frame, self.size)
        if self.frames_transform is not None:
            slot = _PendingFrame()
            self._pending.append((slot, rgb))
            if len(self._pending) >= self.batch_size:
                self._flush()
            return slot
        return rgb if self.frame_transform is None else self.frame_transform(rgb)

    def _flush(self) -> None:
        if not self._pending:
            return
        outputs = self.frames_transform(np.stack([rgb for _, rgb in self._pending]))
        if len(outputs) != len(self._pending):
            raise ValueError(f"frames_transform returned {len(outputs)} frames for {len(self._pending)}")
        for (slot, _), output in zip(self._pending, outputs):
            slot.value = output
        self._pending = []

    def stack(self, converted: list) -> np.ndarray:
        """The results of the calls, in the given order, as one array (the last pending batch is transformed now)."""
        self._flush()
        return np.stack([item.value if isinstance(item, _PendingFrame) else item for item in converted])

"""What `load_video` stores for each kept frame: RGB uint8, upright, optionally downscaled, then the caller's transform
-- written into ONE preallocated array as it is decoded.

The processors pass their image preprocessing as the transform, so a long high-resolution video never holds its
sampled frames at full resolution: each kept frame is converted as soon as the sampler picks it, one by one
(``frame_transform``) or in small batches (``frames_transform``, faster; at most ``batch_size`` full-resolution frames
wait at once). The results go straight into rows of one array, sized from the number of frames the loader expects
(`FrameConverter.expect`), so the clip is never held twice (a list of frames and their stacked copy); the array is
trimmed in place at the end. Its size is known before the first frame is stored, which is when a video that will need
more than `LARGE_FRAMES_BYTES` is reported, with the figure and what to do about it.

A `FrameWriter` goes one step further: it writes each kept frame's result straight into its row of that array (no
result to copy, no batch to stack): the processors write model pixels this way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arguments import optional_count
from .orientation import IDENTITY, Orientation

logger = logging.getLogger(__name__)

__all__ = ["LARGE_FRAMES_BYTES", "FrameConverter", "FrameWriter", "frame_to_rgb"]

#: Kept frames needing more memory than this (2 GiB) are announced with a warning before they are decoded: about where
#: a laptop starts to swap with a model loaded. The warning gives the figure and suggests ``max_seconds``.
LARGE_FRAMES_BYTES = 2 * 1024**3

#: Rows reserved when the loader cannot tell how many frames it will keep (doubled as needed).
_INITIAL_ROWS = 64


@dataclass(frozen=True)
class FrameWriter:
    """Writes what one kept frame becomes straight into its row of the clip's array.

    Attributes:
        shape: the shape of one row, e.g. ``(3, 224, 224)``.
        dtype: its numpy dtype.
        write: ``write(frame, row)``: fills ``row`` (a writable ``shape`` array) from ``frame``, the upright
            ``(H, W, 3)`` uint8 RGB frame.
    """

    shape: tuple[int, ...]
    dtype: Any
    write: Callable[[np.ndarray, np.ndarray], None]


def frame_to_rgb(frame: Any, size: tuple[int, int] | None, orientation: Orientation = IDENTITY) -> np.ndarray:
    """One decoded frame (PyAV ``VideoFrame`` or an ``(H, W, 3)`` array) -> upright ``(H, W, 3)`` uint8, resized to
    ``size`` (the upright ``(height, width)``) if asked."""
    if isinstance(frame, np.ndarray):
        if size is None or frame.shape[:2] == size:
            return np.array(frame, dtype=np.uint8, copy=True)
        from PIL import Image

        return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.Resampling.BILINEAR))
    if size is None:
        return orientation.apply(_reformat(frame, format="rgb24").to_ndarray())
    height, width = orientation.displayed_size(*size)  # the stored frame's size that turns into `size`
    # swscale area averaging: a good, cheap downscaler
    rgb = _reformat(frame, width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()
    return orientation.apply(rgb)


_reformatters = threading.local()


def _reformat(frame: Any, **kwargs: Any) -> Any:
    """``frame.reformat(**kwargs)`` through this thread's own single-threaded swscale context. PyAV 18.1.1 shares one
    context per thread, with swscale worker threads by default; a process forked after using it (a DataLoader worker)
    inherits the context but not its threads, and its next conversion waits for them forever. One thread per
    conversion also leaves the CPUs to the decoders. The pixels are the same (swscale's slices do the same sums)."""
    reformatter = getattr(_reformatters, "reformatter", None)
    if reformatter is None:
        from av.video.reformatter import VideoReformatter

        reformatter = _reformatters.reformatter = VideoReformatter()
    return reformatter.reformat(frame, threads=1, **kwargs)


def _size_text(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.1f} MB"


class _FrameRows:
    """Rows of one array, filled in any order; allocated when the first row's shape is known, grown by doubling when
    the expected count was too small, trimmed in place."""

    def __init__(self, name: str):
        self.name = name
        self.expected: int | None = None
        self.array: np.ndarray | None = None
        self.count = 0  # rows handed out

    def reserve(self) -> int:
        self.count += 1
        return self.count - 1

    def write(self, row: int, value: np.ndarray) -> None:
        value = np.asarray(value)
        self.row(row, value.shape, value.dtype)[...] = value

    def row(self, row: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """Row ``row`` of the array (a writable view), the array being allocated for rows of ``shape`` / ``dtype``
        if it is not yet."""
        if self.array is None:
            self._allocate(tuple(shape), np.dtype(dtype))
        if row >= self.array.shape[0]:
            self.array.resize((max(2 * self.array.shape[0], row + 1), *self.array.shape[1:]), refcheck=False)
        return self.array[row]

    def _allocate(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        rows = max(self.expected or _INITIAL_ROWS, self.count)
        needed = rows * int(np.prod(shape)) * dtype.itemsize
        if self.expected is not None and needed > LARGE_FRAMES_BYTES:
            logger.warning(
                "%s: keeping %d frames of shape %s (%s) needs about %s of memory for the frames alone; pass "
                "max_seconds= (or a lower fps / max_frames) to keep less.",
                self.name, rows, shape, dtype, _size_text(needed),
            )
        # np.empty: pages are committed as rows are written, so an over-estimate costs no memory
        self.array = np.empty((rows, *shape), dtype=dtype)

    def take(self, rows: Sequence[int]) -> np.ndarray:
        """The given rows in the given order: the array itself (trimmed in place) when they are all rows in order."""
        if self.array is None:  # pragma: no cover - a clip always has a frame
            raise ValueError(f"{self.name}: no frame was stored")
        if list(rows) == list(range(self.count)):
            if self.array.shape[0] != self.count:
                self.array.resize((self.count, *self.array.shape[1:]), refcheck=False)
            result, self.array = self.array, None
            return result
        # a frame kept twice, or a new order (clip ends): one gather
        result = self.array[np.asarray(rows, dtype=np.int64)]
        self.array = None
        return result


class FrameConverter:
    """Called on each kept frame as it is decoded (returning the frame's row); `stack` then gives the clip's frames.

    Args:
        size: ``(height, width)`` to downscale to right away, or ``None``.
        frame_transform: applied to each ``(H, W, 3)`` uint8 frame.
        frames_transform: applied to ``(k, H, W, 3)`` batches of up to ``batch_size`` frames.
        batch_size: frames per ``frames_transform`` call.
        name: the input, for the memory warning.
        frame_writer: writes each ``(H, W, 3)`` uint8 frame's result into its row (give at most one of the three).

    Attributes:
        orientation: how decoded frames are turned upright (set by the loader from the stream's display matrix).
    """

    def __init__(
        self,
        size: tuple[int, int] | None,
        frame_transform: Callable[[np.ndarray], np.ndarray] | None = None,
        frames_transform: Callable[[np.ndarray], np.ndarray] | None = None,
        batch_size: int = 16,
        name: str = "the video",
        frame_writer: FrameWriter | None = None,
    ):
        given = [key for key, value in (("frame_transform", frame_transform), ("frames_transform", frames_transform),
                                        ("frame_writer", frame_writer)) if value is not None]
        if len(given) > 1:
            raise ValueError(f"give one of frame_transform, frames_transform and frame_writer, got {' and '.join(given)}")
        self.size = size
        self.frame_transform = frame_transform
        self.frames_transform = frames_transform
        self.frame_writer = frame_writer
        if frames_transform is not None:
            batch_size = optional_count(batch_size, "transform_batch_size") or 1
        self.batch_size = batch_size
        self.orientation = IDENTITY
        self._rows = _FrameRows(name)
        self._pending: list[tuple[int, np.ndarray]] = []

    def expect(self, count: int | None) -> None:
        """How many frames the loader expects to keep (an upper bound is fine): the size of the array."""
        self._rows.expected = None if count is None else max(int(count), 1)

    def __call__(self, frame: Any) -> int:
        """Convert one frame into the next row (with ``frames_transform``, once its batch is full); its row index."""
        rgb = frame_to_rgb(frame, self.size, self.orientation)
        row = self._rows.reserve()
        if self.frame_writer is not None:
            writer = self.frame_writer
            writer.write(rgb, self._rows.row(row, writer.shape, writer.dtype))
        elif self.frames_transform is not None:
            self._pending.append((row, rgb))
            if len(self._pending) >= self.batch_size:
                self._flush()
        else:
            self._rows.write(row, rgb if self.frame_transform is None else self.frame_transform(rgb))
        return row

    def _flush(self) -> None:
        if not self._pending:
            return
        outputs = self.frames_transform(np.stack([rgb for _, rgb in self._pending]))
        if len(outputs) != len(self._pending):
            raise ValueError(f"frames_transform returned {len(outputs)} frames for {len(self._pending)}")
        for (row, _), output in zip(self._pending, outputs):
            self._rows.write(row, output)
        self._pending = []

    def stack(self, rows: Sequence[int]) -> np.ndarray:
        """The frames of the given rows (the results of the calls), in that order, as one array (the last pending
        batch is transformed now)."""
        self._flush()
        return self._rows.take(rows)

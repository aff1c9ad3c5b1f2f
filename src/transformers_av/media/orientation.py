"""Which way up a decoded video frame is shown: the display matrix (or the older ``rotate`` tag) of a stream, as a
quarter-turn count and a mirror, applied to RGB frames.

Phones store portrait video as landscape pictures plus a *display matrix*: the 3x3 transform a player applies before
showing a frame (FFmpeg's ``AV_FRAME_DATA_DISPLAYMATRIX``; ``libavutil/display.h``). Its top-left 2x2 block
``[[a, b], [c, d]]`` (16.16 fixed point) is a rotation, possibly with a mirror. FFmpeg attaches the matrix to every
decoded frame; containers of older writers carry a ``rotate`` stream tag (clockwise degrees) instead.

The matrix is read as ``mirror(hflip) ∘ rotation``: when its determinant is negative it holds a mirror, which is
removed by negating its first column (``av_display_matrix_flip(matrix, hflip=1, vflip=0)``); the rest is the rotation,
``av_display_rotation_get``'s counter-clockwise angle ``-atan2(b, a)``. A vertical flip is a horizontal flip turned
by 180 degrees, so the eight axis-aligned orientations (the EXIF ones) all come out exactly. Angles that are not
multiples of 90 degrees are rounded to the nearest quarter turn (a logged warning says so): frames stay rectangular.
"""

from __future__ import annotations

import logging
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["Orientation", "frame_orientation", "orientation_from_matrix"]

_DISPLAYMATRIX = "DISPLAYMATRIX"


@dataclass(frozen=True)
class Orientation:
    """How to turn a stored frame upright: ``quarter_turns`` counter-clockwise quarter turns, then a left-right mirror
    when ``mirror``."""

    quarter_turns: int = 0
    mirror: bool = False

    @property
    def is_identity(self) -> bool:
        return self.quarter_turns % 4 == 0 and not self.mirror

    @property
    def swaps_axes(self) -> bool:
        """Whether the upright frame is the stored one's width by height (a quarter or three-quarter turn)."""
        return self.quarter_turns % 2 == 1

    def displayed_size(self, height: int, width: int) -> tuple[int, int]:
        """``(height, width)`` of the upright frame of a stored ``height x width`` frame."""
        return (width, height) if self.swaps_axes else (height, width)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """An ``(H, W, ...)`` stored frame made upright (a contiguous copy; the frame itself when nothing changes)."""
        if self.is_identity:
            return image
        upright = np.rot90(image, self.quarter_turns % 4)
        if self.mirror:
            upright = upright[:, ::-1]
        return np.ascontiguousarray(upright)


IDENTITY = Orientation()


def orientation_from_matrix(matrix: Any, name: str = "the video") -> Orientation:
    """The `Orientation` of a display matrix: 9 int32 in FFmpeg's layout (a sequence, or the 36 bytes of the side
    data)."""
    if isinstance(matrix, (bytes, bytearray, memoryview)):
        matrix = struct.unpack("<9i", bytes(matrix)[:36])
    a, b, _, c, d = (float(v) for v in list(matrix)[:5])
    mirror = a * d - b * c < 0
    if mirror:  # remove the mirror: negate the first column, the rest is a rotation
        a, c = -a, -c
    if a == 0 and b == 0:
        return IDENTITY  # a degenerate (all-zero) matrix: nothing usable
    degrees = -math.degrees(math.atan2(b, a))  # av_display_rotation_get: counter-clockwise degrees
    quarter_turns = round(degrees / 90)
    if abs(degrees - 90 * quarter_turns) > 1:
        logger.warning("%s: display rotation of %.1f degrees rounded to %d degrees.", name, degrees, 90 * quarter_turns)
    return Orientation(quarter_turns % 4, mirror)


def frame_orientation(frame: Any, rotate_tag: str | None = None, name: str = "the video") -> Orientation:
    """The `Orientation` of a decoded PyAV frame: its display matrix side data, else the stream's ``rotate`` tag
    (clockwise degrees, as older muxers wrote it), else upright."""
    container = getattr(frame, "side_data", None) or ()
    for entry in container:
        # PyAV 18.1.0 iterates the side data themselves, 18.1.1 (a mapping) their types
        side_data = entry if hasattr(entry, "type") else container[entry]
        if getattr(side_data.type, "name", str(side_data.type)).endswith(_DISPLAYMATRIX):
            return orientation_from_matrix(bytes(side_data), name)
    if rotate_tag:
        try:
            clockwise = float(rotate_tag)
        except ValueError:
            logger.warning("%s: ignoring the unreadable rotate tag %r.", name, rotate_tag)
            return IDENTITY
        return Orientation(round(-clockwise / 90) % 4, False)
    return IDENTITY

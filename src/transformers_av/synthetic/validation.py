"""Argument checks shared by the generators and writers of synthetic media, with messages that name the argument.

Generated media are test inputs: a wrong argument must fail loudly here, not produce a subtly different clip.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

__all__ = [
    "PathLike",
    "as_audio",
    "check_extension",
    "check_frames",
    "check_frequency",
    "check_int",
    "check_positive",
    "check_sampling_rate",
    "check_seconds",
    "check_size",
]

PathLike = Union[str, "os.PathLike[str]"]


def check_seconds(seconds: Any, name: str = "seconds") -> float:
    """A finite time >= 0 as a float."""
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number, got {seconds!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"`{name}` must be a finite number >= 0, got {seconds!r}")
    return value


def check_positive(value: Any, name: str) -> float:
    """A finite number > 0 as a float."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"`{name}` must be a number > 0, got {value!r}") from None
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
    return number


def check_sampling_rate(sampling_rate: Any, name: str = "sampling_rate") -> int:
    if isinstance(sampling_rate, bool) or not isinstance(sampling_rate, (int, np.integer)) or sampling_rate <= 0:
        raise ValueError(f"`{name}` must be a positive integer (samples per second), got {sampling_rate!r}")
    return int(sampling_rate)


def check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_frequency(frequency: Any, sampling_rate: int, name: str = "frequency") -> float:
    """A frequency in Hz that the sampling rate can represent (below Nyquist)."""
    value = check_positive(frequency, name)
    if value >= sampling_rate / 2:
        raise ValueError(
            f"`{name}` must be below the Nyquist frequency ({sampling_rate / 2:g} Hz at {sampling_rate} Hz), "
            f"got {frequency!r}"
        )
    return value


def check_size(size: Any) -> tuple[int, int]:
    """A ``(height, width)`` picture size of positive ints."""
    if not isinstance(size, Sequence) or len(size) != 2:
        raise ValueError(f"`size` must be (height, width), got {size!r}")
    return check_int(size[0], "size[0] (height)", 1), check_int(size[1], "size[1] (width)", 1)


def as_audio(waveform: Any, name: str) -> np.ndarray:
    """``waveform`` as float32 ``(samples, channels)``; integer PCM is scaled to [-1, 1]."""
    array = np.asarray(waveform)
    if array.dtype.kind == "i":
        array = array.astype(np.float64) / float(-np.iinfo(array.dtype).min)
    elif array.dtype.kind == "u":
        half = (float(np.iinfo(array.dtype).max) + 1.0) / 2.0
        array = (array.astype(np.float64) - half) / half
    elif array.dtype.kind != "f":
        raise ValueError(f"`{name}` must be a float or integer array, got dtype {array.dtype}")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] < 1:
        raise ValueError(f"`{name}` must have shape (samples,) or (samples, channels), got {tuple(np.shape(waveform))}")
    if array.shape[1] > 2 and array.shape[0] <= 2:
        raise ValueError(
            f"`{name}` must have shape (samples,) or (samples, channels), got {array.shape}; "
            "it looks channels-first, pass `waveform.T`"
        )
    if array.shape[0] == 0:
        raise ValueError(f"`{name}` is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{name}` contains NaN or infinite values")
    return np.clip(array, -1.0, 1.0).astype(np.float32)


def check_frames(frames: Any, name: str = "frames") -> np.ndarray:
    """uint8 ``(num_frames, height, width, 3)`` frames as a contiguous array."""
    if not isinstance(frames, np.ndarray):
        frames = np.asarray(frames)
    if frames.dtype != np.uint8:
        raise ValueError(f"`{name}` must be a uint8 array, got dtype {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"`{name}` must have shape (num_frames, height, width, 3), got {frames.shape}")
    if min(frames.shape[:3]) < 1:
        raise ValueError(f"`{name}` must hold at least one frame of at least 1x1 pixels, got shape {frames.shape}")
    return np.ascontiguousarray(frames)


def check_extension(path: PathLike, allowed: Sequence[str], name: str = "path") -> str:
    """The lower-case extension of ``path``, which must be one of ``allowed`` (the format is chosen by it)."""
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise ValueError(f"`{name}` has unsupported extension {suffix or '(none)'!r} (supported: {', '.join(allowed)})")
    return suffix

"""Deterministic synthetic audio, images and videos for tests, benchmarks and demos.

Nothing in this project downloads media; everything is generated, with a known ground truth:

* :func:`make_tone` / :func:`make_beep_track` -- sine tones and "beeps at known times" sound tracks (`signals`);
* :func:`make_frames` / :func:`make_image` -- solid-colour frames (one known colour per frame) with a moving square
  (`signals`);
* :func:`write_wav` / :func:`write_video` -- write them with soundfile / PyAV (mp4, mkv, mov, webm, avi) (`writers`);
* :func:`make_av_clip` (here) -- one call that writes a clip with pictures and sound and returns a
  :class:`SyntheticClip` describing exactly what is in it ("which colour was on screen when the beep sounded").

Every public name of `signals` and `writers` is importable from this module too.

Example:

    >>> from transformers_av.synthetic.media import make_av_clip
    >>> clip = make_av_clip("/tmp/clip.mp4", seconds=3.0, fps=8, beep_at=1.5, colors=["red", "green", "blue"])
    >>> clip.colors_per_frame[clip.frame_index_at(1.5)]
    (0, 128, 0)
    >>> clip.beeps
    ((1.5, 0.25, 1000.0),)

Audio arrays are float32 in ``[-1, 1]`` shaped ``(samples,)`` (mono) or ``(samples, channels)``; frames are uint8
``(num_frames, height, width, 3)`` RGB. PyAV, soundfile and Pillow (the ``video`` extra) are imported lazily, only by
the functions that write or draw files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .signals import (
    DEFAULT_PALETTE,
    IMAGE_EXTENSIONS,
    Beep,
    ColorLike,
    colors_per_frame,
    make_beep_track,
    make_frames,
    make_image,
    make_tone,
    normalise_beeps,
    to_rgb,
)
from .validation import (
    PathLike,
    check_extension,
    check_int,
    check_positive,
    check_sampling_rate,
    check_seconds,
    check_size,
)
from .writers import AUDIO_EXTENSIONS, VIDEO_EXTENSIONS, write_video, write_wav

__all__ = [
    "AUDIO_EXTENSIONS",
    "DEFAULT_PALETTE",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "SyntheticClip",
    "make_av_clip",
    "make_beep_track",
    "make_frames",
    "make_image",
    "make_tone",
    "to_rgb",
    "write_video",
    "write_wav",
]

#: The beep of :func:`make_av_clip` when only its start is given.
DEFAULT_BEEP_SECONDS = 0.25
DEFAULT_BEEP_FREQUENCY = 1000.0


@dataclass(frozen=True)
class SyntheticClip:
    """What :func:`make_av_clip` wrote: the exact inputs, i.e. the ground truth for tests.

    Attributes:
        path: The video file.
        frames: uint8 ``(num_frames, height, width, 3)`` RGB frames as given to the encoder (a lossy file decodes to
            approximately these; a lossless one exactly).
        audio: float32 sound track as given to the encoder, ``(samples,)`` or ``(samples, channels)``.
        fps: Frames per second; frame ``i`` is on screen during ``[i / fps, (i + 1) / fps)``.
        sampling_rate: Sample rate of ``audio``.
        beeps: ``(start_s, duration_s, frequency)`` per beep.
        colors_per_frame: Background RGB colour of each frame.
    """

    path: Path
    frames: np.ndarray = field(repr=False)
    audio: np.ndarray = field(repr=False)
    fps: float
    sampling_rate: int
    beeps: tuple[tuple[float, float, float], ...]
    colors_per_frame: tuple[tuple[int, int, int], ...] = field(repr=False)

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def duration(self) -> float:
        """Length of the video in seconds (``num_frames / fps``)."""
        return self.num_frames / self.fps

    def frame_index_at(self, seconds: float) -> int:
        """Index of the frame on screen at time ``seconds``."""
        seconds = check_seconds(seconds)
        return min(int(math.floor(seconds * self.fps + 1e-9)), self.num_frames - 1)

    def color_at(self, seconds: float) -> tuple[int, int, int]:
        """Background colour on screen at time ``seconds``."""
        return self.colors_per_frame[self.frame_index_at(seconds)]

    def beep_frame_indices(self) -> list[list[int]]:
        """For each beep, the indices of the frames on screen while it sounds."""
        result = []
        for start, duration, _ in self.beeps:
            first = self.frame_index_at(start)
            last = self.frame_index_at(max(start, start + duration - 1e-6))
            result.append(list(range(first, last + 1)))
        return result


def _beeps_from_beep_at(beep_at: Any, seconds: float) -> list[Beep]:
    if beep_at is None:
        if seconds <= 0:
            return []
        duration = min(DEFAULT_BEEP_SECONDS, seconds / 2)
        return [(seconds / 2, duration, DEFAULT_BEEP_FREQUENCY)]
    items = [beep_at] if isinstance(beep_at, (int, float, np.number)) else beep_at
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise ValueError(
            f"`beep_at` must be a time, a list of times or of (start_s, duration_s, frequency), got {beep_at!r}"
        )
    beeps: list[Beep] = []
    for i, item in enumerate(items):
        if isinstance(item, Sequence) and not isinstance(item, str):
            if len(item) != 3:
                raise ValueError(
                    f"`beep_at[{i}]` must be a time or a (start_s, duration_s, frequency) tuple, got {item!r}"
                )
            beeps.append((float(item[0]), float(item[1]), float(item[2])))
        else:
            start = check_seconds(item, f"beep_at[{i}]")
            if start >= seconds:
                raise ValueError(f"`beep_at[{i}]` = {item!r} is not before the end of the clip ({seconds:g} s)")
            beeps.append((start, min(DEFAULT_BEEP_SECONDS, seconds - start), DEFAULT_BEEP_FREQUENCY))
    return beeps


def make_av_clip(
    path: PathLike,
    seconds: float = 3.0,
    fps: float = 8,
    *,
    beep_at: float | Sequence[float] | Sequence[tuple[float, float, float]] | None = None,
    colors: Sequence[ColorLike] | None = None,
    sampling_rate: int = 16000,
    size: tuple[int, int] = (96, 128),
    lossless: bool = False,
    seed: int = 0,
    channels: int = 1,
    noise: float = 0.0,
) -> SyntheticClip:
    """Write a video with coloured frames and a beeping sound track; return exactly what is in it.

    Args:
        path: Output file; container by extension (see :func:`write_video`).
        seconds: Clip length; the video has ``round(seconds * fps)`` frames, the audio ``round(seconds * rate)``
            samples.
        fps: Frames per second.
        beep_at: ``None`` gives one 0.25 s 1 kHz beep in the middle of the clip; a time or list of times gives 0.25 s
            1 kHz beeps starting there; ``(start_s, duration_s, frequency)`` tuples give full control; ``[]`` gives
            a silent track.
        colors: Background colours, spread over the clip in equal runs (see :func:`make_frames`). ``None`` gives one
            colour per second from :data:`DEFAULT_PALETTE` (red for 0-1 s, green for 1-2 s, ...).
        sampling_rate: Audio sample rate.
        size: ``(height, width)`` of the frames.
        lossless: Encode the frames losslessly.
        seed: Seed of the moving square (and of the background noise).
        channels: Audio channels (1 or 2).
        noise: Standard deviation of background noise in the sound track.

    Example:
        >>> clip = make_av_clip("/tmp/clip.mp4", seconds=3.0, fps=8, beep_at=[0.5, 2.0], colors=["red", "lime", "blue"])
        >>> [clip.colors_per_frame[i[0]] for i in clip.beep_frame_indices()]
        [(255, 0, 0), (0, 0, 255)]
    """
    check_extension(path, VIDEO_EXTENSIONS)
    seconds = check_seconds(seconds)
    fps_value = check_positive(fps, "fps")
    sampling_rate = check_sampling_rate(sampling_rate)
    channels = check_int(channels, "channels", 1)
    if channels > 2:
        raise ValueError(f"`channels` must be 1 or 2, got {channels}")
    height, width = check_size(size)
    num_frames = int(round(seconds * fps_value))
    if num_frames < 1:
        raise ValueError(f"`seconds` * `fps` must give at least one frame, got seconds={seconds!r}, fps={fps!r}")
    if colors is None:
        n_colors = min(max(1, int(round(seconds))), num_frames)
        colors = [DEFAULT_PALETTE[i % len(DEFAULT_PALETTE)] for i in range(n_colors)]

    beeps = normalise_beeps(_beeps_from_beep_at(beep_at, seconds), seconds, sampling_rate)
    audio = make_beep_track(beeps, seconds, sampling_rate, channels=channels, noise=noise, seed=seed)
    frames = make_frames(num_frames, height, width, colors=colors, moving_square=True, seed=seed)
    frame_colors = tuple(colors_per_frame(num_frames, colors))
    written = write_video(
        path,
        frames,
        fps_value,
        audio=audio if audio.shape[0] else None,
        audio_sampling_rate=sampling_rate,
        lossless=lossless,
    )
    return SyntheticClip(
        path=written,
        frames=frames,
        audio=audio,
        fps=fps_value,
        sampling_rate=sampling_rate,
        beeps=beeps,
        colors_per_frame=frame_colors,
    )

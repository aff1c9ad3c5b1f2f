"""The window plan: how many synchronised frames a clip has, how they are cut into windows, how many LLM tokens result.

This module is the single source of this arithmetic. The processor uses it to expand the audio-visual placeholder
and the model uses it to lay out the Q-Former windows, so the two can never disagree on the number of tokens.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class WindowPlan:
    """Layout of one sample's synchronised frames.

    Attributes:
        num_frames: frames carrying content, `max(video frames, audio frames)`.
        padded_frames: `num_frames` rounded up to a whole number of coarsest windows (the extra frames are masked).
        windows: windows per resolution, `padded_frames // frames_per_window`.
        queries: queries per window, per resolution.
        num_tokens: audio-visual tokens handed to the LLM (equal for every resolution by construction).
    """

    num_frames: int
    padded_frames: int
    windows: tuple[int, ...]
    queries: tuple[int, ...]
    num_tokens: int


def window_plan(num_frames: int, resolutions: Sequence[Sequence[int]]) -> WindowPlan:
    """Plan the windows of a clip of `num_frames` synchronised frames.

    Windows never overlap; the clip is zero-padded to a multiple of the coarsest window (at least one window, so a
    clip without any frame still yields a well-defined, fully masked window).

    Example: video-SALMONN resolutions `[[1, 3], [10, 30]]` and 64 frames give 70 padded frames, 70 fine windows of 3
    queries and 7 coarse windows of 30 queries: 210 tokens.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}.")
    coarsest = max(k for k, _ in resolutions)
    padded = max(1, math.ceil(num_frames / coarsest)) * coarsest
    windows = tuple(padded // k for k, _ in resolutions)
    queries = tuple(n for _, n in resolutions)
    counts = {w * n for w, n in zip(windows, queries)}
    if len(counts) != 1:
        raise ValueError(f"resolutions {list(resolutions)} produce different token counts {sorted(counts)}.")
    return WindowPlan(num_frames, padded, windows, queries, counts.pop())


def audio_frame_count(
    num_samples: int,
    *,
    sampling_rate: int = 16000,
    frame_seconds: float = 0.5,
    chunk_seconds: float = 30.0,
    max_chunks: int | None = None,
    mode: str = "exact",
) -> int:
    """Synchronised frames covered by `num_samples` audio samples.

    `mode="exact"` counts ceil(duration / frame_seconds); `mode="whole_chunks"` counts every started chunk in full, as
    the official code does (its Whisper always sees 30 s). `max_chunks` truncates the audio to that many chunks.
    """
    if num_samples <= 0:
        return 0
    samples_per_chunk = round(chunk_seconds * sampling_rate)
    if max_chunks is not None:
        num_samples = min(num_samples, max_chunks * samples_per_chunk)
    if mode == "whole_chunks":
        return math.ceil(num_samples / samples_per_chunk) * round(chunk_seconds / frame_seconds)
    if mode != "exact":
        raise ValueError(f"mode must be 'exact' or 'whole_chunks', got {mode!r}.")
    return math.ceil(num_samples / round(frame_seconds * sampling_rate))


def image_frame_count(audio_frames: int) -> int:
    """Frames an image covers: it is shown for the whole audio (as both papers do), at least one frame."""
    return max(audio_frames, 1)


def audio_visual_plan(
    settings, num_video_frames: int, num_audio_samples: int, *, is_image: bool = False, sampling_rate: int = 16000
) -> WindowPlan:
    """The window plan of one sample, from what the processor knows: its video frame count and audio length.

    `settings` is a `FavorConfig` or a `FavorProcessor` (both carry `resolutions`, `frame_seconds`,
    `audio_chunk_seconds`, `max_audio_chunks` and `audio_frame_mode`).
    """
    audio_frames = audio_frame_count(
        num_audio_samples,
        sampling_rate=sampling_rate,
        frame_seconds=settings.frame_seconds,
        chunk_seconds=settings.audio_chunk_seconds,
        max_chunks=settings.max_audio_chunks,
        mode=settings.audio_frame_mode,
    )
    video_frames = image_frame_count(audio_frames) if is_image else num_video_frames
    return window_plan(max(video_frames, audio_frames), settings.resolutions)


__all__ = ["WindowPlan", "window_plan", "audio_frame_count", "audio_visual_plan", "image_frame_count"]

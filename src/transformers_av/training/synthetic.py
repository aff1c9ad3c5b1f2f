"""A synthetic audio-visual task that needs frame-level audio-visual alignment to be solved.

[`make_sync_task`] writes short clips whose screen shows one colour per second (a random order of a small palette)
while ONE beep sounds at a random time, and asks *"What colour was on screen when the beep sounded?"*. Neither the
pictures alone (every colour is shown equally long) nor the sound alone (a beep carries no colour) answer it: the
model must find the frame the beep falls in. With the default 4-colour palette chance is 25%.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

SYNC_QUESTION = "What colour was on screen when the beep sounded?"
SYNC_PALETTE: tuple[str, ...] = ("red", "green", "blue", "yellow")

__all__ = ["SYNC_PALETTE", "SYNC_QUESTION", "make_sync_task"]


def make_sync_task(
    root: str | os.PathLike,
    num_clips: int,
    *,
    seconds: float = 4.0,
    fps: float = 8,
    seed: int = 0,
    palette: Sequence[str] = SYNC_PALETTE,
    size: tuple[int, int] = (32, 32),
    beep_seconds: float = 0.25,
    beep_frequency: float = 1000.0,
    jsonl_name: str = "data.jsonl",
    prefix: str = "clip",
) -> list[dict[str, Any]]:
    """Write `num_clips` clips of the "colour at the beep" task and a JSONL describing them.

    Each clip lasts `seconds` (a whole number >= 1) with one background colour per second: the palette in a random
    order (repeated in fresh random orders if the clip is longer than the palette). One `beep_seconds` beep starts at a
    uniformly random time chosen so that it lies inside one second (one colour). The answer is that colour's name.

    Args:
        root: folder for the clips and the JSONL (created).
        num_clips: how many clips.
        seconds, fps, size: clip length, frame rate and `(height, width)` (small: 32x32 px by default).
        seed: seed of the colours and beep times (clip `i` uses `seed * 1_000_003 + i` for its moving square).
        palette: colour names understood by `transformers_av.testing.media.to_rgb`; chance is `1 / len(palette)`.
        jsonl_name: the JSONL written in `root` (rows in the format of [`load_av_dataset`]).
        prefix: file name prefix of the clips (`{prefix}_{i:04d}.mp4`).

    Returns:
        the rows, as written: `video` (relative to `root`), `prompt`, `answer`, and the ground truth `beep_at`
        (seconds), `colors` (one per second) and `beep_second`.
    """
    from ..testing.media import make_av_clip

    seconds_int = int(round(float(seconds)))
    if seconds_int < 1 or abs(seconds_int - float(seconds)) > 1e-9:
        raise ValueError(f"seconds must be a whole number >= 1, got {seconds!r}")
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips!r}")
    if len(palette) < 2:
        raise ValueError(f"palette needs at least 2 colours, got {list(palette)!r}")
    if not 0 < beep_seconds < 1:
        raise ValueError(f"beep_seconds must be in (0, 1), got {beep_seconds!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(num_clips):
        colors: list[str] = []
        while len(colors) < seconds_int:
            colors += [palette[k] for k in rng.permutation(len(palette))]
        colors = colors[:seconds_int]
        second = int(rng.integers(seconds_int))
        beep_at = round(second + float(rng.uniform(0.0, 1.0 - beep_seconds)), 4)
        name = f"{prefix}_{i:04d}.mp4"
        clip = make_av_clip(
            root / name, seconds=float(seconds_int), fps=fps, beep_at=[(beep_at, beep_seconds, beep_frequency)],
            colors=colors, size=tuple(size), seed=seed * 1_000_003 + i,
        )
        assert clip.color_at(beep_at) == clip.color_at(beep_at + beep_seconds - 1e-6)  # one colour under the beep
        rows.append({
            "video": name,
            "prompt": SYNC_QUESTION,
            "answer": colors[second],
            "beep_at": beep_at,
            "beep_second": second,
            "colors": colors,
        })
    with open(root / jsonl_name, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return rows

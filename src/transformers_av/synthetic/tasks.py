"""Synthetic audio-visual tasks with generated clips (no downloads), for tests, demos and smoke runs.

[`make_match_task`] writes clips whose colour and tone pitch name the same class, so that the pictures alone, the
sound alone and both answer the question: what modality-augmented training (visual-only, audio-only and audio-visual
views of the same clip) needs, and what shows that every encoder path learns.

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

MATCH_QUESTION = "Which colour is this clip?"
#: modality -> the question a row of that modality asks in `make_modality_match_task` (an instruction written from
#: the row's own modality, as the Audio-Visual LLM's modality-augmented training wants)
MATCH_QUESTIONS_BY_MODALITY = {"visual": "Which colour is on screen?", "audio": "Which colour does the tone name?",
                               "audio_visual": MATCH_QUESTION}
#: class -> tone pitch (Hz) of `make_match_task`: one octave apart, so each lands in different mel bins
MATCH_TONES: dict[str, float] = {"red": 300.0, "green": 600.0, "blue": 1200.0, "yellow": 2400.0}

__all__ = ["MATCH_QUESTION", "MATCH_QUESTIONS_BY_MODALITY", "MATCH_TONES", "SYNC_PALETTE", "SYNC_QUESTION",
           "make_match_task", "make_modality_match_task", "make_sync_task"]


def make_match_task(
    root: str | os.PathLike,
    num_clips: int,
    *,
    seconds: float = 2.0,
    fps: float = 4,
    seed: int = 0,
    tones: dict[str, float] | None = None,
    size: tuple[int, int] = (32, 32),
    sampling_rate: int = 16000,
    jsonl_name: str = "data.jsonl",
    prefix: str = "clip",
) -> list[dict[str, Any]]:
    """Write `num_clips` clips of the "which colour?" task and a JSONL describing them.

    Clip `i` draws a class uniformly from `tones` (colour name -> pitch): its screen shows that colour (with the moving
    square of `make_av_clip`) and its sound track is one continuous tone at that pitch. The answer is the colour
    name, so chance is `1 / len(tones)` and either modality alone answers it.

    Returns:
        the rows, as written: `video` (relative to `root`), `prompt`, `answer` and the ground-truth `frequency`.
    """
    from .media import make_av_clip

    tones = dict(MATCH_TONES if tones is None else tones)
    if len(tones) < 2:
        raise ValueError(f"tones needs at least 2 classes, got {tones!r}")
    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips!r}")
    if float(seconds) <= 0:
        raise ValueError(f"seconds must be > 0, got {seconds!r}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = list(tones)
    rows = []
    for i in range(num_clips):
        answer = names[int(rng.integers(len(names)))]
        name = f"{prefix}_{i:04d}.mp4"
        make_av_clip(
            root / name, seconds=float(seconds), fps=fps, beep_at=[(0.0, float(seconds), tones[answer])],
            colors=[answer], size=tuple(size), sampling_rate=sampling_rate, seed=seed * 1_000_003 + i,
        )
        rows.append({"video": name, "prompt": MATCH_QUESTION, "answer": answer, "frequency": tones[answer]})
    with open(root / jsonl_name, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return rows


def make_modality_match_task(
    root: str | os.PathLike,
    num_clips: int,
    *,
    modalities: Sequence[str] = tuple(MATCH_QUESTIONS_BY_MODALITY),
    jsonl_name: str = "data.jsonl",
    **match_task_kwargs: Any,
) -> list[dict[str, Any]]:
    """[`make_match_task`] clips as rows of one modality each: clip `i` is a `modalities[i % len(modalities)]` row
    (`"visual"`: its frames only, `"audio"`: its sound track only, `"audio_visual"`: both) asking the question of
    that modality ([`MATCH_QUESTIONS_BY_MODALITY`]), so no row asks about a medium it is not given.

    Returns:
        the rows, as written: `video`, `modality`, `prompt`, `answer` and the ground-truth `frequency`.
    """
    unknown = [m for m in modalities if m not in MATCH_QUESTIONS_BY_MODALITY]
    if unknown or not modalities:
        raise ValueError(f"modalities must be among {list(MATCH_QUESTIONS_BY_MODALITY)}, got {list(modalities)!r}")
    rows = make_match_task(root, num_clips, jsonl_name=jsonl_name, **match_task_kwargs)
    for i, row in enumerate(rows):
        modality = modalities[i % len(modalities)]
        row.update(modality=modality, prompt=MATCH_QUESTIONS_BY_MODALITY[modality])
    with open(Path(root) / jsonl_name, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return rows


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
        palette: colour names understood by `transformers_av.synthetic.media.to_rgb`; chance is `1 / len(palette)`.
        jsonl_name: the JSONL written in `root` (rows in the format of [`load_av_dataset`]).
        prefix: file name prefix of the clips (`{prefix}_{i:04d}.mp4`).

    Returns:
        the rows, as written: `video` (relative to `root`), `prompt`, `answer`, and the ground truth `beep_at`
        (seconds), `colors` (one per second) and `beep_second`.
    """
    from .media import make_av_clip

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

"""Mixing training rows as the papers' recipes do: in the dataset, row by row, before the collator.

video-SALMONN's mixed training (Sun et al., 2024, §3.3: "a portion of the training set is augmented with unpaired
audio-visual data and the prompt combines the original tasks for audio and video") follows the rules of the released
data code (github bytedance/SALMONN, branch `videosalmonn`, `datasets/sft_dataset.py`,
`SupervisedAudioVisualDataset.get_videoaudioimage` / `get_audioimage`), each one a field of [`MixingRules`]:

* a **video-only** row (modality "visual", a video) is, with probability `video_audio_ratio` (official: 0.2), given
  the audio of a random audio-only row and both tasks: the video question becomes `"In the video, " + question`
  (lower-cased), the two tasks are put in random order and joined with `", and, "` (the second one lower-cased),
  the answers likewise. Otherwise it trains alone, without audio.
* an **image** row without audio is, with probability `image_audio_ratio` (official: 1, every image row), given the
  audio of a random audio-only row; the image question becomes `"In the image, " + question` (lower-cased), the two
  tasks are put in random order and, with probability `image_both_tasks_ratio` (official: 0.5), joined with
  `", and "`; otherwise only the first of the two is asked (the other medium is still given).
* a **paired** audio-video row (modality "audio_visual", a video) becomes, with probability `av_matching_ratio`
  (official: 0.1), an audio-video matching sample: its question is replaced by one of the three official matching
  questions; with probability `av_mismatch_ratio` (official: 0.5) its audio is replaced by that of a random
  audio-only row and the answer is "No.", otherwise it keeps its audio and the answer is "Yes.". As in the official
  code, the rule needs audio-only rows to draw from and does not apply without them.

The random audio comes from the audio-only rows of the WHOLE dataset (the official code draws from its audio
list), not from the same batch. Multi-turn rows and rows without media are never mixed (the official code joins
single question/answer pairs). Not reproduced: the official path-name triggers (`"only_need_video"`, the
SpokenCOCO `"audio_text_matching"` marker) and its all-video / all-image batches (here a batch mixes rows freely).

The Audio-Visual LLM's modality-augmented training (Shu et al., 2023, §3.2: "jointly train three modal types of
samples (i.e., visual-only, audio-only, and audio-visual joint samples) within a single batch") needs rows of the
three modalities, each with instructions written from its own modality (data of the `modality` field,
`transformers_av.training.data`). `modality_mix` sets the share of each modality in an epoch; without it the rows
are used in the proportions the data has (the paper's Table 10: 45k audio, 130k visual and 85k audio-visual
instruction pairs).

Every draw for a sample comes from a generator seeded by `(seed, epoch, position in the epoch)`: it does not depend
on the batch, the data-loading worker or the process, and a run resumed from a checkpoint draws what the
uninterrupted run drew. [`EpochSampler`] yields these positions; `FavorTrainer` uses it for a
[`MixedTrainingData`].
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers.utils import logging

from ..media import has_audio_track
from ..presets.paper import VIDEO_SALMONN_MIXING_VALUES
from .data import CONVERSATION_FIELD, MEDIA_FIELDS, MODALITY_FIELD, ROW_FIELD, ROW_MODALITIES, row_modality

logger = logging.get_logger(__name__)

#: The official audio-video matching questions (`AUDIO_VIDEO_MATCHING` of `sft_dataset.py`) and answers.
AUDIO_VIDEO_MATCHING_QUESTIONS = (
    "Is the audio compatible with the video?",
    "Does the audio come from the same source as the video?",
    "Is the audio related to the video?",
)
MATCH_ANSWER, MISMATCH_ANSWER = "Yes.", "No."
#: How the official code writes the picture's task before joining it with the audio's task.
VIDEO_TASK_PREFIX, VIDEO_TASK_JOIN = "In the video, ", ", and, "
IMAGE_TASK_PREFIX, IMAGE_TASK_JOIN = "In the image, ", ", and "
#: The group of rows without media in a `modality_mix`.
TEXT_GROUP = "text"
MIX_GROUPS = (*ROW_MODALITIES, TEXT_GROUP)

__all__ = [
    "AUDIO_VIDEO_MATCHING_QUESTIONS",
    "EpochSampler",
    "MIX_GROUPS",
    "MixedTrainingData",
    "MixingRules",
    "VIDEO_SALMONN_MIXING",
    "mix_row",
    "modality_counts",
]


@dataclass(frozen=True)
class MixingRules:
    """video-SALMONN's mixed-training rules (see the module docstring); every probability 0 turns mixing off.

    Args:
        video_audio_ratio: share of video-only rows given a random audio row and both tasks (official 0.2).
        image_audio_ratio: share of image rows given a random audio row (official 1.0).
        image_both_tasks_ratio: of those, the share asked both tasks; the rest are asked one (official 0.5).
        av_matching_ratio: share of paired audio-video rows turned into matching questions (official 0.1).
        av_mismatch_ratio: of those, the share given another row's audio and the answer "No." (official 0.5).
    """

    video_audio_ratio: float = 0.0
    image_audio_ratio: float = 0.0
    image_both_tasks_ratio: float = 0.5
    av_matching_ratio: float = 0.0
    av_mismatch_ratio: float = 0.5

    def __post_init__(self):
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"MixingRules: {spec.name} must be a probability in [0, 1], got {value!r}.")

    @property
    def active(self) -> bool:
        """Whether any row can be changed."""
        return self.video_audio_ratio > 0 or self.image_audio_ratio > 0 or self.av_matching_ratio > 0

    @property
    def needs_audio_rows(self) -> bool:
        """Whether a rule gives a row another row's audio (and so needs audio-only rows to draw from)."""
        return self.video_audio_ratio > 0 or self.image_audio_ratio > 0


#: The official values (bytedance/SALMONN, branch videosalmonn, datasets/sft_dataset.py), as the recipe
#: `video-salmonn-mixed` sets them.
VIDEO_SALMONN_MIXING = MixingRules(**VIDEO_SALMONN_MIXING_VALUES)


def _audio_of(row: Mapping[str, Any]) -> str:
    """The sound of an audio-only row: its audio file, or its video's sound track."""
    return row["audio"] if row.get("audio") is not None else row["video"]


def _joined_tasks(row: dict[str, Any], partner: Mapping[str, Any], prefix: str, join: str, *, both: bool,
                  rng: np.random.Generator) -> dict[str, Any]:
    """The row's picture with the partner's audio; the picture's task (prefixed) and the audio task in random order,
    joined (`both`) or the first one only."""
    picture_task = (prefix + row["prompt"].lower(), row["answer"])
    tasks = [(partner["prompt"], partner["answer"]), picture_task]
    first, second = (tasks[i] for i in rng.permutation(2))
    if both:
        prompt, answer = first[0] + join + second[0].lower(), first[1] + join + second[1].lower()
    else:
        prompt, answer = first
    return _with_audio_from(row, partner, prompt=prompt, answer=answer)


def _with_audio_from(row: dict[str, Any], partner: Mapping[str, Any], **changes) -> dict[str, Any]:
    mixed = {**row, "audio": _audio_of(partner), MODALITY_FIELD: "audio_visual", **changes}
    if row.get(ROW_FIELD) is not None and partner.get(ROW_FIELD) is not None:  # errors then name both rows
        mixed[ROW_FIELD] = f"{row[ROW_FIELD]} with the audio of {partner[ROW_FIELD]}"
    return mixed


def mix_row(row: Mapping[str, Any], modality: str | None, rules: MixingRules, rng: np.random.Generator,
            draw_audio_row: Callable[[], Mapping[str, Any]] | None) -> dict[str, Any]:
    """One row after video-SALMONN's mixing rules (a new dict; the row itself when no rule applies).

    Args:
        row: a normalised row of the dataset format.
        modality: its modality ([`row_modality`]).
        rules: the probabilities.
        rng: the generator of this sample's draws.
        draw_audio_row: returns a random audio-only row (drawing from `rng`); `None` when the data has none (then
            the rules that need one do not apply).
    """
    row = dict(row)
    if not rules.active or modality is None or row.get(CONVERSATION_FIELD) is not None:
        return row
    if modality == "visual" and row.get("video") is not None:
        if rng.random() < rules.video_audio_ratio and draw_audio_row is not None:
            return _joined_tasks(row, draw_audio_row(), VIDEO_TASK_PREFIX, VIDEO_TASK_JOIN, both=True, rng=rng)
    elif modality == "visual" and row.get("image") is not None:
        if rng.random() < rules.image_audio_ratio and draw_audio_row is not None:
            both = rng.random() < rules.image_both_tasks_ratio
            return _joined_tasks(row, draw_audio_row(), IMAGE_TASK_PREFIX, IMAGE_TASK_JOIN, both=both, rng=rng)
    elif modality == "audio_visual" and row.get("video") is not None and draw_audio_row is not None:
        if rng.random() < rules.av_matching_ratio:
            question = AUDIO_VIDEO_MATCHING_QUESTIONS[int(rng.integers(len(AUDIO_VIDEO_MATCHING_QUESTIONS)))]
            if rng.random() < rules.av_mismatch_ratio:
                return _with_audio_from(row, draw_audio_row(), prompt=question, answer=MISMATCH_ANSWER)
            return {**row, "prompt": question, "answer": MATCH_ANSWER}
    return row


def _largest_remainder(weights: Mapping[str, float], total: int) -> dict[str, int]:
    """`total` split in proportion to `weights` (integers summing to `total`; ties go to the earlier group)."""
    norm = sum(weights.values())
    exact = {group: total * weight / norm for group, weight in weights.items()}
    counts = {group: math.floor(value) for group, value in exact.items()}
    by_remainder = sorted(exact, key=lambda group: counts[group] - exact[group])
    for group in by_remainder[: total - sum(counts.values())]:
        counts[group] += 1
    return counts


def modality_counts(modalities: Sequence[str | None]) -> dict[str, int]:
    """Rows per group of [`MIX_GROUPS`] (`None` counts as the text group)."""
    counts = dict.fromkeys(MIX_GROUPS, 0)
    for modality in modalities:
        counts[modality or TEXT_GROUP] += 1
    return counts


def _columns(rows, names: Sequence[str]):
    """The rows with only the columns `names` (a `datasets.Dataset` reads just those: the text stays on disk)."""
    column_names = getattr(rows, "column_names", None)
    if column_names is None:
        return rows
    return rows.select_columns([name for name in names if name in column_names])


class MixedTrainingData(torch.utils.data.Dataset):
    r"""
    Training rows with the recipes' mixing applied as they are read: video-SALMONN's [`MixingRules`] and the
    Audio-Visual LLM's modality mix (see the module docstring).

    Read it with the keys of its [`EpochSampler`] (`data[(epoch, position, row)]`): the row, mixed by the draws of
    that position. A plain integer key gives the row unmixed (with its resolved `modality`).

    Args:
        rows: the rows ([`load_av_dataset`]'s `datasets.Dataset`, or a list of normalised rows).
        rules: video-SALMONN's mixing rules (default: none).
        modality_mix: share of each modality per epoch, `{"visual": w, "audio": w, "audio_visual": w, "text": w}`
            (weights, normalised; a group left out gets no rows). Default: the rows as they are.
        seed: seed of every draw.
        has_sound_track: how a video alone is probed for a sound track (its modality); default: the file's header.

    Raises:
        ValueError: a rule that gives rows another row's audio while the data has no audio-only row; a mix that
            asks for a modality the data has no row of; a malformed mix.
    """

    def __init__(self, rows, *, rules: MixingRules = MixingRules(), modality_mix: Mapping[str, float] | None = None,
                 seed: int = 0, has_sound_track: Callable[[str], bool] = has_audio_track):
        self.rows = rows
        self.rules = rules
        self.seed = int(seed)
        media = _columns(rows, (*MEDIA_FIELDS, MODALITY_FIELD, CONVERSATION_FIELD))
        self.modalities = [row_modality(row, has_sound_track=has_sound_track) for row in media]
        counts = modality_counts(self.modalities)
        self.audio_rows = [i for i, (row, modality) in enumerate(zip(media, self.modalities))
                           if modality == "audio" and row.get(CONVERSATION_FIELD) is None]
        if rules.needs_audio_rows and not self.audio_rows:
            raise ValueError(
                "Mixed training gives video-only and image rows the audio of a random audio-only row, but the data "
                f"has no single-turn audio-only row (rows per modality: {counts}). Add audio rows (e.g. audio "
                "captioning) or set video_audio_ratio and image_audio_ratio to 0."
            )
        self.modality_mix = None if modality_mix is None else self._check_mix(modality_mix, counts)
        self.groups = {group: [i for i, m in enumerate(self.modalities) if (m or TEXT_GROUP) == group]
                       for group in MIX_GROUPS}

    @staticmethod
    def _check_mix(mix: Mapping[str, float], counts: Mapping[str, int]) -> dict[str, float]:
        if not isinstance(mix, Mapping) or not mix:
            raise ValueError(f"modality_mix must be a mapping of {list(MIX_GROUPS)} to weights, got {mix!r}.")
        unknown = sorted(set(mix) - set(MIX_GROUPS))
        if unknown:
            raise ValueError(f"modality_mix: unknown group(s) {unknown}; use {list(MIX_GROUPS)}.")
        for group, weight in mix.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                raise ValueError(f"modality_mix: the weight of {group!r} must be a number >= 0, got {weight!r}.")
        weights = {group: float(weight) for group, weight in mix.items() if weight > 0}
        if not weights:
            raise ValueError(f"modality_mix: give at least one weight > 0, got {dict(mix)!r}.")
        empty = [group for group in weights if counts[group] == 0]
        if empty:
            raise ValueError(f"modality_mix asks for {empty} but the data has no such row (rows per modality: "
                             f"{dict(counts)}).")
        left_out = {group: count for group, count in counts.items() if count and group not in weights}
        if left_out:
            logger.warning(f"modality_mix gives no share to {left_out} rows: they are not trained on.")
        return weights

    def __len__(self) -> int:
        return len(self.rows)

    def epoch_order(self, epoch: int) -> list[int]:
        """The rows of an epoch, in order (as many as the data has rows). With a modality mix, each group fills its
        share (largest remainder) with its rows in random order, cycling through all of them before repeating one."""
        rng = np.random.default_rng([self.seed, int(epoch), 0])
        if self.modality_mix is None:
            return rng.permutation(len(self.rows)).tolist()
        picks: list[int] = []
        for group, count in _largest_remainder(self.modality_mix, len(self.rows)).items():
            members = np.asarray(self.groups[group])
            drawn: list[int] = []
            while len(drawn) < count:
                drawn.extend(rng.permutation(members).tolist())
            picks.extend(drawn[:count])
        return [picks[i] for i in rng.permutation(len(picks)).tolist()]

    def __getitem__(self, key) -> dict[str, Any]:
        if isinstance(key, tuple):
            epoch, position, index = key
        else:
            epoch, position, index = None, None, int(key)
        row = {**self.rows[index], MODALITY_FIELD: self.modalities[index]}
        if epoch is None:
            return row
        rng = np.random.default_rng([self.seed, int(epoch), int(position) + 1])
        draw = None
        if self.audio_rows:
            def draw():
                return self.rows[self.audio_rows[int(rng.integers(len(self.audio_rows)))]]
        return mix_row(row, self.modalities[index], self.rules, rng, draw)

    def sampler(self) -> "EpochSampler":
        """The sampler that reads this data epoch by epoch."""
        return EpochSampler(self)


class EpochSampler(torch.utils.data.Sampler):
    """Yields `(epoch, position, row)` keys of a [`MixedTrainingData`] for the current epoch (`set_epoch`, which
    `transformers.Trainer` calls through accelerate). The order and every draw are functions of the data's seed and
    the epoch only, so a resumed run, any worker and every process see the same epoch."""

    def __init__(self, data: MixedTrainingData):
        self.data = data
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.data)

    def __iter__(self):
        for position, index in enumerate(self.data.epoch_order(self.epoch)):
            yield (self.epoch, position, index)

"""Training data: a hand-writable JSONL format, its loader, and a lazy-decoding collator for `transformers.Trainer`.

The dataset format
==================

One JSON object per line (a "row"); media paths are relative to a `media_root` (absolute paths are kept)::

    {"video": "clips/0001.mp4", "prompt": "What is the man saying?", "answer": "Hello there."}
    {"audio": "audio/0002.wav", "image": "img/0002.jpg", "prompt": "Describe the scene.", "answer": "A dog barks."}
    {"video": "clips/0003.mp4", "conversations": [
        {"from": "human", "value": "<video>\\nWhat happens first?"}, {"from": "gpt", "value": "A door opens."},
        {"from": "human", "value": "And then?"}, {"from": "gpt", "value": "A dog runs in."}]}

Fields:

* `video` / `audio` / `image` (optional, strings): media files. A video's own sound track is its audio unless
  `audio` is given. `video` and `image` exclude each other. A row without media is a text-only sample.
* `modality` (optional): what the sample is trained on -- `"visual"` (the picture only: a video's sound track is
  not used), `"audio"` (the sound only: an `audio` file, or a video's sound track without its frames) or
  `"audio_visual"` (both). Written or not, every row has one (`row_modality`): without the field it follows from
  the media given (an image or a video with an `audio` file is audio-visual, an image alone visual, an audio file
  alone audio) and, for a video alone, from whether the file has a sound track. The Audio-Visual LLM's
  modality-augmented training (Shu et al. §3.2) mixes rows of the three modalities, each with instructions written
  from its own modality; video-SALMONN's mixed training (Sun et al. §3.3) treats visual-only, image and paired rows
  differently (`transformers_av.training.mixing`).
* `prompt`, `answer` (strings): the question and the target response of a single-turn sample.
* `conversations` (optional, replaces `prompt`/`answer`): alternating turns starting with the user and ending with
  the assistant. A turn is `{"role": "user"|"assistant", "content": str}` (also accepted: `"from"` with
  `"human"`/`"user"`/`"gpt"`/`"assistant"` and `"value"`, the LLaVA/video-SALMONN style). Media tags written in the
  text (`<video>`, `<image>`, `<audio>`, `<speech>`) are removed: the media always sit at the start of the first
  user turn.
* any other field is kept as is (e.g. ground truth for evaluation).

[`load_av_dataset`] reads such a file (or takes any `datasets` table with these columns), checks every row and
returns a `datasets.Dataset` with the columns `video`, `audio`, `image`, `prompt`, `answer`, `conversations`
(turns normalised to `{"role", "content"}`; `None` for single-turn rows) plus the extra fields.

Multi-turn samples (what is trained)
------------------------------------

The official format concatenates the turns into one sequence. [`FavorDataCollator`] renders the whole conversation
with the processor's chat template (`USER: <Img><AV></Img> q1\\nASSISTANT: a1</s>USER: q2\\nASSISTANT:`) as the
prompt and the *final* assistant turn as the answer: the loss is on the final answer (and its eos) only, the earlier
answers are context (label -100). The visual Q-Former's instruction is the final question. To train every answer of
a conversation, write one row per prefix of it.

Using it with `transformers.Trainer`
====================================

The rows hold strings (paths and text), not tensors: decoding happens in the collator, batch by batch. `Trainer`
drops the dataset columns that are not arguments of the model's `forward` unless told otherwise, so pass
`TrainingArguments(..., remove_unused_columns=False)`::

    dataset = load_av_dataset("train.jsonl")                      # paths relative to the file's folder
    collator = FavorDataCollator(processor, padding_side="right")
    trainer = Trainer(model=model, args=TrainingArguments("out", remove_unused_columns=False),
                      train_dataset=dataset, data_collator=collator)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..media import has_audio_track
from ..models.av_llm.configuration_av_llm import MODALITY_TOKENS
from ..models.av_llm.processing_av_llm import mark_modality
from ..models.common.processing_common import is_media_file
from ..models.favor.processing_favor import SAMPLING_RATE, TEXT_ONLY_TEMPLATE

MEDIA_FIELDS = ("video", "audio", "image")
TEXT_FIELDS = ("prompt", "answer")
CONVERSATION_FIELD = "conversations"
MODALITY_FIELD = "modality"
#: The column `transformers-av train` adds to name a row in errors ("row 3 of train.jsonl").
ROW_FIELD = "_row"
#: The modalities a row can be trained on (the Audio-Visual LLM's `<VIS>`, `<AUD>`, `<AUD_VIS>`).
ROW_MODALITIES = tuple(MODALITY_TOKENS)
_ROLE_ALIASES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
_MEDIA_TAG = re.compile(r"<(video|image|audio|speech)>\s*", flags=re.IGNORECASE)

__all__ = [
    "AvLlmDataCollator",
    "CONVERSATION_FIELD",
    "MEDIA_FIELDS",
    "MODALITY_FIELD",
    "ROW_FIELD",
    "ROW_MODALITIES",
    "FavorDataCollator",
    "declared_modality",
    "load_av_dataset",
    "manifest_row_names",
    "normalize_row",
    "read_jsonl_rows",
    "row_modality",
]


# --------------------------------------------------------------------------------------------------------------------
# rows: validation and normalisation
# --------------------------------------------------------------------------------------------------------------------


def _row_error(where: str, field: str, message: str) -> ValueError:
    return ValueError(f"{where}: field {field!r} {message}")


def _normalize_conversation(turns: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(turns, Sequence) or isinstance(turns, (str, bytes)) or not turns:
        raise _row_error(where, CONVERSATION_FIELD, f"must be a non-empty list of turns, got {turns!r}")
    normalised = []
    for t, turn in enumerate(turns):
        field = f"{CONVERSATION_FIELD}[{t}]"
        if not isinstance(turn, Mapping):
            raise _row_error(where, field, f"must be an object with 'role'/'from' and 'content'/'value', got {turn!r}")
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if role is None:
            raise _row_error(where, field, "has no 'role' (or 'from')")
        if not isinstance(role, str) or role.lower() not in _ROLE_ALIASES:
            raise _row_error(where, field, f"has role {role!r}; expected one of {sorted(_ROLE_ALIASES)}")
        if not isinstance(content, str) or not content.strip():
            raise _row_error(where, field, f"needs a non-empty string 'content' (or 'value'), got {content!r}")
        role = _ROLE_ALIASES[role.lower()]
        expected = "user" if t % 2 == 0 else "assistant"
        if role != expected:
            raise _row_error(where, field, f"is a {role!r} turn where a {expected!r} turn is expected "
                                           "(turns alternate, starting with the user)")
        normalised.append({"role": role, "content": content})
    if normalised[-1]["role"] != "assistant":
        raise _row_error(where, CONVERSATION_FIELD, "must end with an assistant turn (the training target)")
    return normalised


def normalize_row(row: Mapping[str, Any], index: int | str = "?", *, source: str | None = None,
                  media_root: str | os.PathLike | None = None, unit: str = "row") -> dict[str, Any]:
    """Check one row of the dataset format and return it normalised (all columns present, turns as
    `{"role", "content"}`, media paths joined to `media_root` when given). Raises `ValueError` naming the row
    (`unit` `index`: "row 3", or "line 4" of a JSONL file) and the field."""
    where = f"{unit} {index}" + (f" of {source}" if source else "")
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected a JSON object, got {type(row).__name__}")
    out = dict(row)
    for field in MEDIA_FIELDS:
        value = row.get(field)
        if value is None:
            out[field] = None
            continue
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value:
            raise _row_error(where, field, f"must be a path (non-empty string), got {value!r}")
        out[field] = _join(media_root, value)
    if out["video"] is not None and out["image"] is not None:
        raise ValueError(f"{where}: fields 'video' and 'image' exclude each other (give one visual input)")
    out[MODALITY_FIELD] = _check_modality(out, row.get(MODALITY_FIELD), where)

    conversation = row.get(CONVERSATION_FIELD)
    if conversation is not None:
        out[CONVERSATION_FIELD] = _normalize_conversation(conversation, where)
        for field in TEXT_FIELDS:
            if row.get(field) is not None:
                raise _row_error(where, field, f"cannot be combined with {CONVERSATION_FIELD!r} (the turns hold the text)")
            out[field] = None
    else:
        out[CONVERSATION_FIELD] = None
        for field in TEXT_FIELDS:
            value = row.get(field)
            if value is None:
                raise _row_error(where, field, f"is missing (give 'prompt' and 'answer', or {CONVERSATION_FIELD!r})")
            if not isinstance(value, str) or not value.strip():
                raise _row_error(where, field, f"must be a non-empty string, got {value!r}")
    return out


def _check_modality(row: Mapping[str, Any], modality: Any, where: str) -> str | None:
    """The row's `modality` field, checked against its media (`None` when not given)."""
    if modality is None:
        return None
    if modality not in ROW_MODALITIES:
        raise _row_error(where, MODALITY_FIELD, f"must be one of {list(ROW_MODALITIES)}, got {modality!r}")
    picture = row["video"] is not None or row["image"] is not None
    if modality == "visual" and not picture:
        raise _row_error(where, MODALITY_FIELD, "is 'visual' but the row gives no 'video' or 'image'")
    if modality == "visual" and row["audio"] is not None:
        raise _row_error(where, MODALITY_FIELD, "is 'visual' but the row gives an 'audio' file (drop it, or write "
                                                "'audio_visual')")
    if modality == "audio" and row["image"] is not None:
        raise _row_error(where, MODALITY_FIELD, "is 'audio' but the row gives an 'image' (drop it, or write "
                                                "'audio_visual')")
    if modality == "audio" and row["video"] is not None and row["audio"] is not None:
        raise _row_error(where, MODALITY_FIELD, "is 'audio' but the row gives both a 'video' and an 'audio' file "
                                                "(give the one whose sound is trained)")
    if modality != "visual" and row["audio"] is None and row["video"] is None:
        raise _row_error(where, MODALITY_FIELD, f"is {modality!r} but the row gives no 'audio' or 'video' to hear")
    if modality == "audio_visual" and not picture:
        raise _row_error(where, MODALITY_FIELD, "is 'audio_visual' but the row gives no 'video' or 'image'")
    return modality


def declared_modality(row: Mapping[str, Any]) -> str | None:
    """The modality a normalised row states or implies without opening a file: its `modality` field, else
    "audio_visual" for a picture with an `audio` file, "visual" for an image alone, "audio" for an audio file
    alone; `None` for a video alone (its sound track decides) and for a text-only row."""
    if row.get(MODALITY_FIELD) is not None:
        return row[MODALITY_FIELD]
    picture = row.get("video") is not None or row.get("image") is not None
    if picture and row.get("audio") is not None:
        return "audio_visual"
    if row.get("image") is not None:
        return "visual"
    if row.get("audio") is not None:
        return "audio"
    return None


def row_modality(row: Mapping[str, Any], *, has_sound_track=has_audio_track) -> str | None:
    """The modality a normalised row trains on: [`declared_modality`], and for a video alone "audio_visual" when
    the file has a sound track (`has_sound_track(path)`, which opens the file's header only), else "visual".
    `None` for a text-only row."""
    modality = declared_modality(row)
    if modality is None and row.get("video") is not None:
        video = row["video"]
        return "audio_visual" if is_media_file(video) and has_sound_track(video) else "visual"
    return modality


def _join(root: str | os.PathLike | None, path: str) -> str:
    if root is None or os.path.isabs(path) or "://" in path:
        return path
    return os.path.join(os.fspath(root), path)


def read_jsonl_rows(path: str | os.PathLike) -> list[tuple[int, Any]]:
    """``(line number, row)`` for each non-blank line of a JSONL file (1-based, as editors count)."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append((line_number, json.loads(line)))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {line_number}: not valid JSON ({error.msg})") from None
    return rows


def manifest_row_names(path: str | os.PathLike) -> list[str]:
    """How messages name each row of a dataset file: ``"line N"`` (JSONL, 1-based) or ``"row i"`` (a ``.json``
    list, 0-based index)."""
    if Path(path).suffix == ".json":
        return [f"row {i}" for i in range(len(json.loads(Path(path).read_text(encoding="utf-8"))))]
    return [f"line {number}" for number, _ in read_jsonl_rows(path)]


def load_av_dataset(path_or_table: Any, media_root: str | os.PathLike | None = None, split: str = "train"):
    """Load and check an audio-visual instruction dataset.

    Args:
        path_or_table: a JSONL file (one row per line; a `.json` file holding a list of rows also works), a
            `datasets.Dataset`, a `datasets.DatasetDict` (its `split` is taken) or a list of row dicts.
        media_root: folder the relative media paths are relative to; they are rewritten to `media_root/path`.
            Default for a file: the file's folder; for a table: paths are left as they are (the collator's
            `media_root` can resolve them later).
        split: the split of a `DatasetDict`, and the split name given to the returned dataset.

    Returns:
        a `datasets.Dataset` with the columns `video`, `audio`, `image`, `modality`, `prompt`, `answer`,
        `conversations` and any extra field. `modality` is the row's [`declared_modality`] (`None` for a video
        alone, whose sound track decides: [`row_modality`] opens it). Files are not opened (the collator decodes
        them).

    Raises:
        ValueError: a row breaks the format; the message names the row (its 1-based line for a JSONL file, else its
            0-based index) and field.
    """
    import datasets  # the `train` extra: only reading a training set needs it

    source, line_numbers = None, None
    if isinstance(path_or_table, (str, os.PathLike)):
        path = Path(path_or_table)
        if not path.is_file():
            raise FileNotFoundError(f"No dataset file at {path}")
        source = str(path)
        if path.suffix == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(rows, list):
                raise ValueError(f"{path}: a .json dataset must hold a list of rows")
        else:
            numbered = read_jsonl_rows(path)
            line_numbers, rows = [number for number, _ in numbered], [row for _, row in numbered]
        if media_root is None:
            media_root = path.parent
    elif isinstance(path_or_table, datasets.DatasetDict):
        if split not in path_or_table:
            raise ValueError(f"The DatasetDict has no split {split!r} (splits: {list(path_or_table)})")
        rows = path_or_table[split].to_list()
    elif isinstance(path_or_table, datasets.Dataset):
        rows = path_or_table.to_list()
    elif isinstance(path_or_table, Sequence) and not isinstance(path_or_table, (str, bytes)):
        rows = list(path_or_table)
    else:
        raise TypeError(
            "load_av_dataset takes a JSONL/JSON path, a datasets.Dataset/DatasetDict or a list of rows, "
            f"got {type(path_or_table).__name__}"
        )
    if not rows:
        raise ValueError(f"The dataset{' ' + source if source else ''} has no rows")
    if line_numbers is not None:  # a JSONL file: rows are named by their line
        normalised = [normalize_row(row, line, source=source, media_root=media_root, unit="line")
                      for line, row in zip(line_numbers, rows)]
    else:
        normalised = [normalize_row(row, i, source=source, media_root=media_root) for i, row in enumerate(rows)]
    for row in normalised:  # what the row states or implies; a video alone stays None (its sound track decides)
        row[MODALITY_FIELD] = declared_modality(row)
    # every row gets every column (Arrow needs one schema)
    columns = list(dict.fromkeys(key for row in normalised for key in row))
    table = {column: [row.get(column) for row in normalised] for column in columns}
    try:
        return datasets.Dataset.from_dict(table, split=datasets.Split(split) if split else None)
    except Exception as error:  # an extra field with mixed types, e.g. numbers in one row and text in another
        raise ValueError(f"Cannot build a table from the rows (extra fields must keep one type per column): {error}") from error


# --------------------------------------------------------------------------------------------------------------------
# the collator
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class _Sample:
    text: str
    answer: str
    question: str
    qformer_text: str | None = None
    video: str | None = None
    audio: str | None = None
    image: str | None = None
    modality: str | None = None


class FavorDataCollator:
    r"""
    Turns rows of the dataset format into a padded training batch with [`FavorProcessor`].

    Media are decoded lazily, in `__call__`, from the paths in the rows (so a `Dataset` of strings is all the
    `Trainer` holds; nothing is opened when the collator is built). `labels` are -100 everywhere but on the answer
    tokens and the closing eos. Use `TrainingArguments(remove_unused_columns=False)`: the raw columns are strings
    that `forward` does not take, and `Trainer` would otherwise drop them before the collator sees them.

    A row's `modality` is honoured: a `"visual"` row of a video with a sound track has its audio features switched
    off (`modality_mask` 0 for audio, as video-SALMONN's official data code masks a video-only sample's audio), an
    `"audio"` row of a video is given the video's sound track as its audio and no frames. Mixing rows (unpaired
    audio, audio-video matching, a modality mix) happens before the collator, in the dataset
    ([`~transformers_av.training.mixing.MixedTrainingData`]): a mixed row is an ordinary row here.

    Args:
        processor ([`FavorProcessor`]): builds the model inputs.
        media_root: folder relative media paths are resolved against (default: as written, i.e. the working
            directory; [`load_av_dataset`] already joins the JSONL's folder).
        padding_side (`str`, defaults to `"right"`): padding of `input_ids`/`labels`.
        max_length (`int`, optional): answers are truncated so that a sample fits (prompts are never cut).
        ensure_all_modalities (`bool`, defaults to False): for data-parallel training (DDP, FSDP, ZeRO) every rank
            must run every encoder on every step. When the whole batch lacks audio (or pictures), add zero dummy
            inputs for it so that the model still runs those encoders (FAVOR runs Whisper/BEATs only when
            `input_features` is given and the visual encoder only when pictures are given; otherwise skip that encoder
            and its projection). A batch without audio gets zero Whisper log-mel features (one 30 s chunk per
            sample) with an all-False `input_features_mask` (0 audio frames: the token count does not change) and,
            when the processor computes audio events, a zero BEATs fbank (1 s); a batch without pictures gets one
            zero frame per sample, marked as a real frame only for samples with audio (so it never adds a frame:
            the sample already has at least one audio frame). `modality_mask` stays 0 for these modalities, so the
            model multiplies their features by 0: the loss and the audio-visual tokens are exactly those of the
            batch without the dummies. A batch with no media at all (text only) is left as it is: the model skips
            its encoders and connector for it (with dummies it would lay out audio-visual windows that the prompt has
            no placeholders for), so sharded training on text-only batches needs the model itself to run its
            encoders on dummies.
    """

    def __init__(
        self,
        processor,
        *,
        media_root: str | os.PathLike | None = None,
        padding_side: str = "right",
        max_length: int | None = None,
        ensure_all_modalities: bool = False,
    ):
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        self.processor = processor
        self.media_root = media_root
        self.padding_side = padding_side
        self.max_length = max_length
        self.ensure_all_modalities = bool(ensure_all_modalities)

    # -- rows -> samples -------------------------------------------------------------------------------------------
    def _row(self, feature: Mapping[str, Any], index: int) -> dict[str, Any]:
        if not isinstance(feature, Mapping):
            raise TypeError(f"{type(self).__name__}: batch item {index} is a {type(feature).__name__}, expected a "
                            "row dict")
        if not any(key in feature for key in (*TEXT_FIELDS, CONVERSATION_FIELD)):
            raise ValueError(
                f"{type(self).__name__}: batch item {index} has no 'prompt'/'answer'/'conversations' (keys: "
                f"{sorted(feature)}). With transformers.Trainer pass TrainingArguments(remove_unused_columns=False): "
                "the dataset's columns are strings that the model's forward does not take."
            )
        return normalize_row(feature, index, source="the batch", media_root=self.media_root)

    def _sample(self, row: dict[str, Any]) -> _Sample:
        media = {field: row[field] for field in MEDIA_FIELDS}
        modality = row.get(MODALITY_FIELD)
        conversation = row[CONVERSATION_FIELD]
        if conversation is None:
            prompt = row["prompt"]
            token = getattr(self.processor, "audio_visual_token", None)
            # a prompt written with the placeholder: its question is what the processor reads out of it
            question = self.processor._question_of(prompt) if token and token in prompt else prompt
            return _Sample(text=prompt, answer=row["answer"], question=question, modality=modality, **media)
        question = _MEDIA_TAG.sub("", conversation[-2]["content"]).strip()
        return _Sample(text=self._render_conversation(conversation, media), answer=conversation[-1]["content"],
                       question=question, qformer_text=question, modality=modality, **media)

    def _render_conversation(self, conversation: list[dict[str, str]], media: dict[str, Any]) -> str:
        """All turns but the final answer, in the processor's chat template, ending with the generation prompt."""
        has_media = any(value is not None for value in media.values())
        messages = []
        for t, turn in enumerate(conversation[:-1]):
            text = _MEDIA_TAG.sub("", turn["content"]).strip() if turn["role"] == "user" else turn["content"]
            if t == 0 and has_media:
                kind = "video" if media["video"] is not None else "image" if media["image"] is not None else "audio"
                content: Any = [{"type": kind}, {"type": "text", "text": text}]
            else:
                content = text
            messages.append({"role": turn["role"], "content": content})
        rendered = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if has_media:
            return rendered
        # a text-only prompt is wrapped by the processor's text-only template: hand it the inside

        before, after = TEXT_ONLY_TEMPLATE.split("{question}")
        if not (rendered.startswith(before) and rendered.endswith(after)):
            raise ValueError("A text-only multi-turn row needs a chat template that starts like the text-only prompt "
                             f"template {TEXT_ONLY_TEMPLATE!r}.")
        return rendered[len(before) : len(rendered) - len(after)]

    # -- the call ----------------------------------------------------------------------------------------------------
    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        samples = [self._hear_only(sample) for sample in self._samples(features)]
        batch = self._process(samples, qformer_text=[s.qformer_text for s in samples])
        batch = self._mask_unheard(batch, samples)
        if self.ensure_all_modalities:
            batch = self._add_missing_modalities(batch)
        return batch

    def _samples(self, features: Sequence[Mapping[str, Any]]) -> list[_Sample]:
        """The batch's rows as samples."""
        if not features:
            raise ValueError(f"{type(self).__name__} got an empty batch")
        return [self._sample(self._row(feature, i)) for i, feature in enumerate(features)]

    @staticmethod
    def _hear_only(sample: _Sample) -> _Sample:
        """An audio-only row of a video: its sound track as the audio, no frames."""
        if sample.modality == "audio" and sample.video is not None:
            return dataclasses.replace(sample, audio=sample.video, video=None)
        return sample

    @staticmethod
    def _mask_unheard(batch: dict[str, torch.Tensor], samples: list[_Sample]) -> dict[str, torch.Tensor]:
        """A visual-only row's sound track is loaded with the batch (the processor takes the sound of every video)
        but switched off: its audio features are multiplied by 0 in the model."""
        unheard = [i for i, sample in enumerate(samples) if sample.modality == "visual"]
        if unheard and "modality_mask" in batch:
            batch["modality_mask"][unheard, 1] = 0
        return batch

    def _process(self, samples: list[_Sample], **extra) -> dict[str, torch.Tensor]:
        """One processor call for the samples (`extra`: processor-specific arguments)."""
        # a sample with an explicit audio (a separate file, or another row's sound in a mixed row) does not hear its
        # video's own sound track: use_video_audio applies only to samples without `audio`
        return dict(self.processor(
            text=[s.text for s in samples],
            videos=[s.video for s in samples],
            audio=[s.audio for s in samples],
            images=[s.image for s in samples],
            answers=[s.answer for s in samples],
            use_video_audio=True,
            padding_side=self.padding_side,
            max_length=self.max_length,
            return_tensors="pt",
            **extra,
        ))

    def _add_missing_modalities(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Zero dummy inputs for the modalities the whole batch lacks (see `ensure_all_modalities`)."""

        processor = self.processor
        batch_size = batch["input_ids"].shape[0]
        if "input_features" not in batch and "pixel_values_videos" not in batch:
            return batch  # text only: see the class docstring
        if "input_features" not in batch:
            extractor = processor.feature_extractor
            mel_frames = int(round(processor.audio_chunk_seconds * SAMPLING_RATE)) // extractor.hop_length
            batch["input_features"] = torch.zeros(batch_size, extractor.feature_size, mel_frames)
            batch["input_features_mask"] = torch.zeros(batch_size, mel_frames, dtype=torch.bool)
            if getattr(processor, "compute_audio_events", False):
                # a real BEATs input shape (1 s of fbank); the mask marks it as content so that BEATs runs on it --
                # its output is dropped anyway: the sample has 0 audio frames (from input_features_mask)
                fbank = processor.audio_feature_extractor(
                    np.zeros(SAMPLING_RATE, dtype=np.float32), sampling_rate=SAMPLING_RATE, return_tensors="pt"
                )["input_features"][0]
                batch["audio_input_features"] = torch.zeros(batch_size, *fbank.shape)
                batch["audio_input_features_mask"] = torch.ones(batch_size, fbank.shape[0], dtype=torch.bool)
        if "pixel_values_videos" not in batch:
            has_audio = batch["input_features_mask"].any(-1)
            if bool(has_audio.any()):
                size = processor.image_processor.size
                batch["pixel_values_videos"] = torch.zeros(batch_size, 1, 3, size, size)
                # one frame, counted only where the sample has >= 1 audio frame: the frame count (max of the two)
                # and so the number of audio-visual tokens are unchanged
                batch["video_frame_mask"] = has_audio[:, None].clone()
                batch["video_is_image"] = torch.zeros(batch_size, dtype=torch.bool)
        return batch


class AvLlmDataCollator(FavorDataCollator):
    r"""
    [`FavorDataCollator`] for the Audio-Visual LLM ([`AvLlmProcessor`]): the same rows and loading; a row's
    modality is written into its prompt as the modality token (`<VIS>`, `<AUD>`, `<AUD_VIS>`, Shu et al. §3.2), so
    the processor loads and the model encodes only the media of that modality. A row without a `modality` field
    and without a modality token in its prompt uses every medium it has.

    Modality-augmented training (the paper's MAT) is a property of the data: rows of the three modalities, each with
    instructions written from its own modality, mixed in the batches (see `modality_mix` in
    [`~transformers_av.training.mixing.MixedTrainingData`]). The collator never turns one row into several.

    `ensure_all_modalities` is not needed here and is ignored: the model itself runs the encoders a batch lacks on
    dummy inputs when training in several processes (`AvLlmConfig.run_absent_encoders`).
    """

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        return self._process([self._marked(sample) for sample in self._samples(features)])

    @staticmethod
    def _marked(sample: _Sample) -> _Sample:
        """The sample with its row's modality token in the prompt (right before the placeholder, or first)."""
        if sample.modality is None:
            return sample
        named = [modality for modality, token in MODALITY_TOKENS.items() if token in sample.text]
        if named and named != [sample.modality]:
            raise ValueError(f"a row of modality {sample.modality!r} has a prompt marked {MODALITY_TOKENS[named[0]]} "
                             f"({sample.text!r})")
        if named:
            return sample
        return dataclasses.replace(sample, text=mark_modality(sample.text, sample.modality))

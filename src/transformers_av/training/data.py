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
import hashlib
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
from ..models.av_llm.configuration_av_llm import MEDIA_TOKEN, MODALITY_TOKENS
from ..models.av_llm.processing_av_llm import mark_modality
from ..models.common.processing_common import is_media_file
from ..models.favor.processing_favor import SAMPLING_RATE, TEXT_ONLY_TEMPLATE

MEDIA_FIELDS = ("video", "audio", "image")
TEXT_FIELDS = ("prompt", "answer")
CONVERSATION_FIELD = "conversations"
_ROLE_ALIASES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}
_MEDIA_TAG = re.compile(r"<(video|image|audio|speech)>\s*", flags=re.IGNORECASE)

__all__ = [
    "AvLlmDataCollator",
    "CONVERSATION_FIELD",
    "MEDIA_FIELDS",
    "FavorDataCollator",
    "load_av_dataset",
    "manifest_row_names",
    "normalize_row",
    "read_jsonl_rows",
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
        a `datasets.Dataset` with the columns `video`, `audio`, `image`, `prompt`, `answer`, `conversations` and any
        extra field. Files are not opened (the collator decodes them).

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


class FavorDataCollator:
    r"""
    Turns rows of the dataset format into a padded training batch with [`FavorProcessor`].

    Media are decoded lazily, in `__call__`, from the paths in the rows (so a `Dataset` of strings is all the
    `Trainer` holds; nothing is opened when the collator is built). `labels` are -100 everywhere but on the answer
    tokens and the closing eos. Use `TrainingArguments(remove_unused_columns=False)`: the raw columns are strings
    that `forward` does not take, and `Trainer` would otherwise drop them before the collator sees them.

    Args:
        processor ([`FavorProcessor`]): builds the model inputs.
        media_root: folder relative media paths are resolved against (default: as written, i.e. the working
            directory; [`load_av_dataset`] already joins the JSONL's folder).
        padding_side (`str`, defaults to `"right"`): padding of `input_ids`/`labels`.
        max_length (`int`, optional): answers are truncated so that a sample fits (prompts are never cut).
        mixed_unpaired_ratio (`float`, defaults to 0): video-SALMONN's mixed unpaired audio-visual training. Each
            sample is, with this probability, replaced by an *unpaired* one: the picture of its own row (its video,
            without its sound track, or its image) with the audio of another row of the batch picked at random (that
            row's `audio` file, or its video's sound track). The prompts and answers are joined with one space, the
            visual row first::

                prompt = f"{visual_prompt} {audio_prompt}"      answer = f"{visual_answer} {audio_answer}"

            (for a multi-turn row, its final question and answer). A sample stays paired when no other row of the
            batch has audio or its own row has no picture; a batch of one row is never unpaired.
        modality_augmentation (`bool`, defaults to False): the Audio-Visual LLM's modality-augmented training. Every
            sample (after the unpairing above) becomes three consecutive samples of the same media, prompt and
            answer: video-only (`modality_mask` [1, 0]), audio-only ([0, 1]) and audio-visual ([1, 1]), in that order.
            The media are decoded once; the masked modality is zeroed in the model through `modality_mask` (the token
            count is that of the full clip). A sample that has only one modality is kept once.
        seed (`int`, defaults to 0): seed of the unpairing draws. The draws of a batch are a function of the seed
            and the batch's rows (their media, prompts and answers), not of how many batches came before: a run
            resumed from a checkpoint, or decoding in several dataloader workers, draws exactly what an
            uninterrupted single-worker run draws. (The same rows in the same order get the same draws; with a
            shuffled dataset and batches of 2 or more that is rare.)
        ensure_all_modalities (`bool`, defaults to False): give every batch every modality tensor, so that every
            encoder runs on every batch (what data-parallel training with FSDP / DeepSpeed ZeRO-3 needs, and DDP
            without `find_unused_parameters`: a rank whose batch lacks a modality would otherwise skip that encoder
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
        mixed_unpaired_ratio: float = 0.0,
        modality_augmentation: bool = False,
        seed: int = 0,
        ensure_all_modalities: bool = False,
    ):
        if not 0.0 <= float(mixed_unpaired_ratio) <= 1.0:
            raise ValueError(f"mixed_unpaired_ratio must be in [0, 1], got {mixed_unpaired_ratio!r}")
        if padding_side not in ("left", "right"):
            raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
        self.processor = processor
        self.media_root = media_root
        self.padding_side = padding_side
        self.max_length = max_length
        self.mixed_unpaired_ratio = float(mixed_unpaired_ratio)
        self.modality_augmentation = bool(modality_augmentation)
        self.seed = seed
        self.ensure_all_modalities = bool(ensure_all_modalities)

    # -- rows -> samples -------------------------------------------------------------------------------------------
    def _row(self, feature: Mapping[str, Any], index: int) -> dict[str, Any]:
        if not isinstance(feature, Mapping):
            raise TypeError(f"FavorDataCollator: batch item {index} is a {type(feature).__name__}, expected a row dict")
        if not any(key in feature for key in (*TEXT_FIELDS, CONVERSATION_FIELD)):
            raise ValueError(
                f"FavorDataCollator: batch item {index} has no 'prompt'/'answer'/'conversations' (keys: "
                f"{sorted(feature)}). With transformers.Trainer pass TrainingArguments(remove_unused_columns=False): "
                "the dataset's columns are strings that the model's forward does not take."
            )
        row = normalize_row(feature, index, source="the batch", media_root=self.media_root)
        return row

    def _sample(self, row: dict[str, Any]) -> _Sample:
        media = {field: row[field] for field in MEDIA_FIELDS}
        conversation = row[CONVERSATION_FIELD]
        if conversation is None:
            prompt = row["prompt"]
            token = getattr(self.processor, "audio_visual_token", None)
            # a prompt written with the placeholder: its question is what the processor reads out of it
            question = self.processor._question_of(prompt) if token and token in prompt else prompt
            return _Sample(text=prompt, answer=row["answer"], question=question, **media)
        question = _MEDIA_TAG.sub("", conversation[-2]["content"]).strip()
        return _Sample(text=self._render_conversation(conversation, media), answer=conversation[-1]["content"],
                       question=question, qformer_text=question, **media)

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

    def _batch_rng(self, samples: list[_Sample]) -> np.random.Generator:
        """A generator seeded by `seed` and the content of the batch (stateless: resumable, worker-independent)."""
        # file names, not full paths: the same rows give the same draws wherever the media folder lies
        def name(path):
            return None if path is None else os.path.basename(str(path))

        content = json.dumps(
            [[name(s.video), name(s.audio), name(s.image), s.text, s.answer] for s in samples], ensure_ascii=False
        )
        key = int.from_bytes(hashlib.sha256(content.encode("utf-8")).digest()[:8], "little")
        return np.random.default_rng([int(self.seed) & 0xFFFFFFFFFFFFFFFF, key])

    def _unpair(self, samples: list[_Sample]) -> list[_Sample]:
        """video-SALMONN's mixed unpaired training: replace a share of the samples by (picture of row i, audio of
        row j != i), with joined prompts and answers."""
        if self.mixed_unpaired_ratio <= 0 or len(samples) < 2:
            return samples

        track: dict[int, str | None] = {}

        def audio_of(j: int) -> str | None:  # decided lazily: only the partners drawn are probed
            if j not in track:
                other = samples[j]
                if other.audio is not None:
                    track[j] = other.audio
                elif other.video is not None and has_audio_track(other.video):
                    track[j] = other.video
                else:
                    track[j] = None
            return track[j]

        rng = self._batch_rng(samples)
        mixed = []
        for i, sample in enumerate(samples):
            draw = rng.random()
            has_picture = sample.video is not None or sample.image is not None
            partner = None
            if draw < self.mixed_unpaired_ratio and has_picture:
                for j in rng.permutation([j for j in range(len(samples)) if j != i]).tolist():
                    if audio_of(j) is not None:
                        partner = j
                        break
            if partner is None:
                mixed.append(sample)
                continue
            other = samples[partner]
            joined = f"{sample.question} {other.question}"
            mixed.append(_Sample(
                text=joined,
                answer=f"{sample.answer} {other.answer}",
                question=joined,
                qformer_text=joined,
                video=sample.video,
                image=sample.image,
                # an explicit audio replaces the video's own sound track in the processor
                audio=audio_of(partner),
            ))
        return mixed

    # -- the call ----------------------------------------------------------------------------------------------------
    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        samples = self._samples(features)
        batch = self._process(samples, qformer_text=[s.qformer_text for s in samples])
        if self.ensure_all_modalities:
            batch = self._add_missing_modalities(batch)
        if self.modality_augmentation:
            batch = self._augment(batch)
        return batch

    def _samples(self, features: Sequence[Mapping[str, Any]]) -> list[_Sample]:
        """The batch's rows as samples, after the unpairing draws."""
        if not features:
            raise ValueError(f"{type(self).__name__} got an empty batch")
        return self._unpair([self._sample(self._row(feature, i)) for i, feature in enumerate(features)])

    def _process(self, samples: list[_Sample], **extra) -> dict[str, torch.Tensor]:
        """One processor call for the samples (`extra`: processor-specific arguments)."""
        # unpaired samples carry an explicit audio: the processor then ignores their video's own sound track
        # (use_video_audio applies only to samples without `audio`, i.e. the paired ones, which keep their sound)
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

    @staticmethod
    def _augment(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each sample -> video-only, audio-only and audio-visual copies (only the modalities it has)."""
        present = batch["modality_mask"]  # (B, 2) [video, audio]
        views = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        index, masks = [], []
        for i, has in enumerate(present.bool().tolist()):
            if all(has):
                index += [i, i, i]
                masks.append(views)
            else:
                index.append(i)
                masks.append(present[i : i + 1])
        index = torch.tensor(index)
        out = {key: value[index] for key, value in batch.items()}
        out["modality_mask"] = torch.cat(masks).to(present.dtype)
        return out


class AvLlmDataCollator(FavorDataCollator):
    r"""
    [`FavorDataCollator`] for the Audio-Visual LLM ([`AvLlmProcessor`]): the same rows, loading and unpairing;
    modalities are chosen by the prompt's modality token instead of a `modality_mask`.

    `modality_augmentation=True` is the paper's modality-augmented training: every sample that has both a picture
    and a sound (its own `audio`, or its video's sound track) becomes three consecutive samples of the same clip,
    prompt and answer, marked `<VIS>` (frames only), `<AUD>` (audio only) and `<AUD_VIS>` (both), in that order. The
    processor loads only what each mark names and the model runs only the encoders each sample asks for. A sample
    with one modality is kept once (marked by what it has).

    `ensure_all_modalities` is not needed here and is ignored: the model itself runs the encoders a batch lacks on
    dummy inputs when training in several processes (`AvLlmConfig.run_absent_encoders`).
    """

    VIEWS = ("visual", "audio", "audio_visual")

    def __call__(self, features: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        samples = self._samples(features)
        if self.modality_augmentation:
            samples = [view for sample in samples for view in self._views(sample)]
        return self._process(samples)

    def _views(self, sample: _Sample) -> list[_Sample]:
        """The `<VIS>` / `<AUD>` / `<AUD_VIS>` copies of an audio-visual sample (the sample itself otherwise)."""

        if any(token in sample.text for token in MODALITY_TOKENS.values()):
            return [sample]
        has_picture = sample.video is not None or sample.image is not None
        has_sound = sample.audio is not None or (is_media_file(sample.video) and has_audio_track(sample.video))
        if not (has_picture and has_sound):
            return [sample]
        views = []
        for view in self.VIEWS:
            if MEDIA_TOKEN in sample.text:
                text = mark_modality(sample.text, view)
            else:
                text = f"{MODALITY_TOKENS[view]} {sample.text}"
            views.append(dataclasses.replace(sample, text=text))
        return views

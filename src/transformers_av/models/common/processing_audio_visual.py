"""What every audio-visual processor of the package shares on top of transformers' `ProcessorMixin`.

* the typed call keywords (`AudioVisualProcessingKwargs`): transformers' text / images / videos / audio kwargs, merged
  by `ProcessorMixin._merge_kwargs` (flat keywords routed to the sub-processor that knows them, a keyword given both
  flat and in its modality dict refused, unknown keywords warned about and ignored, as in every transformers
  processor), plus the package's own: `use_video_audio`, `wrap_question` and the video kwarg `max_seconds`;
* the call-time video settings (`VideoSampling`): transformers' `num_frames` / `fps` / `do_sample_frames` over the
  processor's own defaults;
* chat templates: media items are handed to the processor per conversation, undecoded (the processor's own loaders
  read paths, bytes, frames and waveforms, and take a video's sound track), and the rendered conversation is
  tokenised as written;
* the text part of the output: the prompt ids around each expanded placeholder, padded as `padding` asks, with
  `text_replacement_offsets` (from transformers' `get_text_with_replacements`) / `mm_token_type_ids` on request.
"""

# no `from __future__ import annotations`: transformers reads the TypedDicts' annotations as real types
from dataclasses import dataclass
from typing import Any

from transformers.processing_utils import ImagesKwargs, ProcessingKwargs, ProcessorMixin, VideosKwargs
from transformers.utils import logging

from .processing_common import (
    check_padding_side,
    encode_rows,
    padded_length,
    prompt_token_ids,
    prompt_token_offsets,
    with_answer,
)
from .self_contained import SelfContainedProcessorMixin

logger = logging.get_logger(__name__)

# the image-processor settings a call may override for images and for the frames of a video
PIXEL_KWARGS = frozenset(ImagesKwargs.__annotations__) - {"return_tensors", "device", "disable_grouping"}


class AudioVisualVideosKwargs(VideosKwargs, total=False):
    """transformers' video keywords (`num_frames`, `fps`, `do_sample_frames`, the pixel settings ...) and:

    max_seconds (`float`, *optional*):
        use only the first seconds of each video (defaults to the processor's `max_video_seconds`).
    decode (`str`, defaults to `"exact"`):
        `"exact"`: the frames as FFmpeg decodes them (the official pipeline's pixels). `"fast"`: the same frames
        decoded without H.264 / HEVC deblocking, and (`FavorProcessor`) resized to the model's size by FFmpeg's
        scaler (area averaging) instead of the official bicubic resize: faster, pixels slightly different (see
        `media.video.load_video` and the README's "### Measured").
    """

    max_seconds: float | None
    decode: str


class AudioVisualProcessingKwargs(ProcessingKwargs, total=False):
    """The keywords of an audio-visual processor call, on top of transformers' per-modality kwargs:

    use_video_audio (`bool`, defaults to `True`):
        take a video's own sound track as the sample's audio when no `audio` is given.
    wrap_question (`bool`, defaults to `True`):
        wrap a text that holds no placeholder in the processor's prompt template, as a question (a sample without
        media gets the text-only template). `apply_chat_template` turns it off: a rendered conversation is the
        finished prompt.
    allow_partial (`bool`, defaults to `False`):
        use the decoded part of a truncated or damaged media file (with a warning) instead of raising
        `MediaDecodeError`.
    """

    videos_kwargs: AudioVisualVideosKwargs
    use_video_audio: bool
    wrap_question: bool
    allow_partial: bool


@dataclass(frozen=True)
class VideoSampling:
    """How the frames of one call's videos are picked: `load_video`'s `sampling`, `fps`, `num_frames` and
    `max_seconds`."""

    sampling: str
    fps: float
    num_frames: int | None
    max_seconds: float | None

    @classmethod
    def from_kwargs(cls, videos_kwargs: dict, *, sampling: str, fps: float, num_frames: int | None,
                    max_seconds: float | None) -> "VideoSampling":
        """The call's `videos_kwargs` over the processor's defaults: `num_frames` samples that many frames spread
        evenly over the clip, `fps` samples at that rate, `do_sample_frames=False` keeps frames given in memory as
        they are (files are always sampled: nothing else bounds their frame count)."""
        max_seconds = videos_kwargs.get("max_seconds", max_seconds)
        if videos_kwargs.get("do_sample_frames") is False:
            return cls("fps", fps, None, max_seconds)
        if videos_kwargs.get("num_frames") is not None:
            return cls("uniform", fps, int(videos_kwargs["num_frames"]), max_seconds)
        if videos_kwargs.get("fps") is not None:
            return cls("fps", float(videos_kwargs["fps"]), None, max_seconds)
        return cls(sampling, fps, num_frames if sampling == "uniform" else None, max_seconds)

    def load_arguments(self) -> dict[str, Any]:
        """Keyword arguments of `load_video`."""
        arguments: dict[str, Any] = {"sampling": self.sampling, "fps": self.fps, "max_seconds": self.max_seconds}
        if self.sampling == "uniform":
            arguments["num_frames"] = self.num_frames
        return arguments


def pixel_kwargs(modality_kwargs: dict) -> dict:
    """The image-processor settings of a modality's merged kwargs (sampling settings and tensor types left out)."""
    return {key: value for key, value in modality_kwargs.items() if key in PIXEL_KWARGS and value is not None}


class AudioVisualProcessorMixin(SelfContainedProcessorMixin, ProcessorMixin):
    """Shared behaviour of `FavorProcessor` and `AvLlmProcessor` (see the module docstring). A subclass defines
    `video_token` (its placeholder, which stands for the sample's video or image and its audio together),
    `video_token_id` and transformers' `replace_video_token` hook (the run a placeholder expands to, from
    `{"num_media_tokens": [...]}`)."""

    valid_processor_kwargs = AudioVisualProcessingKwargs
    # defaults of the call keywords (transformers reads flat ones and `<modality>_kwargs` from class attributes):
    # batches come padded, left for generation, as PyTorch tensors
    text_kwargs = {"padding": "longest", "padding_side": "left", "return_tensors": "pt"}
    use_video_audio = True
    wrap_question = True
    allow_partial = False

    def merged_call_kwargs(self, kwargs: dict) -> dict:
        """`kwargs` of a call merged with the processor's defaults by transformers' `_merge_kwargs`, and checked
        before any medium is decoded."""
        output_kwargs = self._merge_kwargs(
            self.valid_processor_kwargs, tokenizer_init_kwargs=self.tokenizer.init_kwargs, **kwargs
        )
        text_kwargs, videos_kwargs = output_kwargs["text_kwargs"], output_kwargs["videos_kwargs"]
        check_padding_side(text_kwargs.get("padding_side") or "left")
        padded_length([[]], text_kwargs)  # a valid `padding` (and a `max_length` for padding="max_length")
        for name in ("num_frames", "fps", "max_seconds"):
            value = videos_kwargs.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
                                      or (name == "num_frames" and int(value) != value)):
                kind = "a positive integer" if name == "num_frames" else "a positive number"
                raise ValueError(f"`{name}` must be {kind} (or None), got {value!r}.")
        return output_kwargs

    def audio_sampling_rate(self, audio_kwargs: dict) -> int:
        """The rate of a waveform given in memory: `sampling_rate` when given, else the feature extractor's own, as
        every transformers processor assumes (and, like transformers' feature extractors, says so once)."""
        rate = audio_kwargs.get("sampling_rate")
        if rate is not None:
            return int(rate)
        rate = int(self.feature_extractor.sampling_rate)
        logger.warning_once(
            f"{type(self).__name__}: a waveform in memory without `sampling_rate=` is taken to be at the feature "
            f"extractor's {rate} Hz; pass its sample rate with `sampling_rate=` if it is another one."
        )
        return rate

    # -- text --------------------------------------------------------------------------------------------------------
    def encode_prompts(
        self,
        prompts: list[str],
        num_media_tokens: list[int | None],
        media_kinds: list[str | None],
        answers: list[str | None],
        output_kwargs: dict,
    ) -> dict[str, Any]:
        """The text part of the output: each prompt tokenised around its placeholder, expanded to the sample's
        `num_media_tokens` (None: the sample has no media), with its answer as the only labelled tokens, padded as
        the merged `text_kwargs` ask; `text_replacement_offsets` and `mm_token_type_ids` when requested."""
        text_kwargs = output_kwargs["text_kwargs"]
        max_length = text_kwargs.get("max_length")
        add_special_tokens = text_kwargs.get("add_special_tokens", True) is not False
        rows, label_rows = [], []
        for index, (prompt, count) in enumerate(zip(prompts, num_media_tokens)):
            ids = prompt_token_ids(
                self.tokenizer, prompt, self.video_token, self.video_token_id, count or 0, add_special_tokens
            )
            ids, labels = with_answer(self.tokenizer, ids, answers[index], max_length, index, count or 0)
            rows.append(ids)
            label_rows.append(labels)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        encoded = encode_rows(rows, label_rows, pad_id, text_kwargs)
        if not any(answer is not None for answer in answers):
            del encoded["labels"]
        if text_kwargs.get("return_offsets_mapping"):
            encoded["offset_mapping"] = self._offset_rows(prompts, num_media_tokens, encoded["input_ids"], rows,
                                                          add_special_tokens, text_kwargs)

        if output_kwargs.get("return_text_replacement_offsets") or text_kwargs.get("return_text_replacement_offsets"):
            runs = [self.replace_video_token({"num_media_tokens": num_media_tokens}, i)
                    for i, count in enumerate(num_media_tokens) if count is not None]
            _, offsets = self.get_text_with_replacements(list(prompts), videos_replacements=runs)
            # one placeholder stands for whatever the sample has: say which ("video", "image" or "audio")
            for sample_offsets, kind in zip(offsets, media_kinds):
                for entry in sample_offsets:
                    entry["type"] = kind
            encoded["text_replacement_offsets"] = offsets
        if output_kwargs.get("return_mm_token_type_ids") or text_kwargs.get("return_mm_token_type_ids"):
            encoded["mm_token_type_ids"] = self.create_mm_token_type_ids(encoded["input_ids"])
        return encoded

    def _offset_rows(self, prompts, num_media_tokens, input_ids, rows, add_special_tokens, text_kwargs) -> list:
        """`offset_mapping` rows laid out like `input_ids`: answer and padding tokens get `(0, 0)`, as special
        tokens do."""
        padding_side = text_kwargs.get("padding_side") or "left"
        offset_rows = []
        for prompt, count, row, padded in zip(prompts, num_media_tokens, rows, input_ids):
            offsets = prompt_token_offsets(self.tokenizer, prompt, self.video_token, count or 0, add_special_tokens)
            offsets += [(0, 0)] * (len(row) - len(offsets))
            padding = [(0, 0)] * (len(padded) - len(row))
            offset_rows.append(padding + offsets if padding_side == "left" else offsets + padding)
        return offset_rows

    # -- chat --------------------------------------------------------------------------------------------------------
    def apply_chat_template(self, conversation, chat_template: str | None = None,
                            add_generation_prompt: bool | None = None, continue_final_message: bool = False, **kwargs):
        """transformers' `apply_chat_template`; the rendered conversation is the finished prompt, so the processor
        uses it as written (`wrap_question=False`) unless `processor_kwargs` say otherwise. Media items ("video",
        "audio", "image", with the medium under its type's key, "path" or "url") are loaded by the processor; a
        video's own sound track is its audio unless the conversation gives one. The generation prompt is added
        unless `add_generation_prompt=False` or `continue_final_message=True` (a prompt is what these processors
        are called for; this default predates the kwargs machinery)."""
        if add_generation_prompt is None:
            add_generation_prompt = not continue_final_message
        processor_kwargs = dict(kwargs.pop("processor_kwargs", None) or {})
        processor_kwargs.setdefault("wrap_question", False)
        return super().apply_chat_template(
            conversation, chat_template, add_generation_prompt=add_generation_prompt,
            continue_final_message=continue_final_message, processor_kwargs=processor_kwargs, **kwargs
        )

    def _multimodal_inputs_from_conversations(self, conversations, audio_loading_params, load_audio_from_video=False):
        """Per conversation, its video, image and audio sources as given (paths, bytes, frames, waveforms), each in
        a list of at most one item; the processor decodes them. (transformers' own version decodes audio files here
        and flattens audio over the batch, which loses which conversation an audio belongs to.)"""
        batch_images, batch_videos, batch_audios = [], [], []
        for conversation in conversations:
            found: dict[str, list] = {"image": [], "video": [], "audio": []}
            for message in conversation:
                content = message.get("content") or []
                if isinstance(content, str):
                    continue
                for block in content:
                    kind = block.get("type")
                    if kind in found:
                        found[kind].extend(block[key] for key in (kind, "url", "path", "base64") if key in block)
            batch_images.append(found["image"])
            batch_videos.append(found["video"])
            batch_audios.append(found["audio"])
        # no audio anywhere: nothing to pass (transformers then does not set a sampling rate either)
        return batch_images, batch_videos, batch_audios if any(batch_audios) else [], {}


__all__ = [
    "AudioVisualProcessingKwargs",
    "AudioVisualProcessorMixin",
    "AudioVisualVideosKwargs",
    "PIXEL_KWARGS",
    "VideoSampling",
    "pixel_kwargs",
]

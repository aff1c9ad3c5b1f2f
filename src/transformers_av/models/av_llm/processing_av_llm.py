"""`AvLlmProcessor`: media files and prompts -> exactly the inputs `AvLlmForConditionalGeneration` expects."""

from __future__ import annotations

import re
from contextlib import nullcontext
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import BatchFeature
from transformers.processing_utils import Unpack

from .configuration_av_llm import MEDIA_TOKEN, MODALITY_TOKENS
from .token_counts import linear_connector_token_count, split_into_segments
from ...media.audio import has_audio_track, load_audio
from ...media.background import in_background
from ...media.image import load_image
from ...media.remote import reuse_downloads
from ...media.video import load_video
from ..common.processing_audio_visual import (
    AudioVisualProcessingKwargs,
    AudioVisualProcessorMixin,
    VideoSampling,
    pixel_kwargs,
)
from ..common.processing_common import (
    describe,
    in_memory_audio,
    is_media_file,
    is_path,
    naming_the_sample,
    per_sample,
    sample_media,
    stack_padded,
    vicuna_chat_template,
)

if TYPE_CHECKING:  # media.py is imported lazily; this line also makes transformers ship it with the remote code
    from ...media.video import VideoClip  # noqa: F401

DEFAULT_PROMPT_TEMPLATE = "USER: {media} {question}\nASSISTANT:"
TEXT_ONLY_TEMPLATE = "USER: {question}\nASSISTANT:"
DEFAULT_CHAT_TEMPLATE = vicuna_chat_template(MEDIA_TOKEN + " ")


class AvLlmProcessorKwargs(AudioVisualProcessingKwargs, total=False):
    """The keywords of an [`AvLlmProcessor`] call: transformers' `text_kwargs` (`padding`, `max_length`,
    `padding_side`, `add_special_tokens`, `return_tensors` ...), `images_kwargs` / `videos_kwargs` (the CLIP image
    processor's settings; `num_frames` (default: the processor's), `fps`, `do_sample_frames` and `max_seconds` for
    the frame sampler), `audio_kwargs` (`sampling_rate`: the rate of waveforms given in memory, the CLAP feature
    extractor's when not given), and `use_video_audio` / `wrap_question` / `allow_partial` (see
    [`AudioVisualProcessingKwargs`])."""


class AvLlmProcessor(AudioVisualProcessorMixin):
    r"""
    Builds the inputs of [`AvLlmForConditionalGeneration`] from prompts and media.

    Per sample: a video (`num_frames` frames sampled uniformly over it; its sound track is the audio unless `audio`
    is given), an image (one frame), an audio file or waveform, or an image/video with a separate audio. The audio is
    resampled to the feature extractor's rate (48 kHz for CLAP), cut into `num_audio_segments` equal segments and
    each segment turned into CLAP features.

    Modalities: a prompt may name them with `<VIS>`, `<AUD>` or `<AUD_VIS>`; only the named media are loaded (a video
    asked for with `<VIS>` is not even decoded for sound) and a named modality without its media is an error.
    Without a modality token, the sample uses every medium it has. The media placeholder (`<av_media>`) is expanded
    to exactly the number of tokens the model produces, `linear_connector_token_count` (the function the connector
    itself uses), and the modality token is put right before it: the token stands at the position of its sample
    (Shu et al. §3.2). A prompt holding the placeholder is used as written; any other text is a question that
    `prompt_template` wraps (after removing a leading modality token); a modality token written inside a question
    keeps its place there, its media right after it (the question then goes in the text-only frame `USER: ...`).

    Args:
        image_processor ([`CLIPImageProcessor`]): frame preprocessing (224 px, CLIP mean/std).
        feature_extractor ([`ClapFeatureExtractor`]): CLAP log-mel per audio segment.
        tokenizer: the LLM tokenizer; the placeholder and modality tokens are added to it when missing.
        num_frames (`int`, defaults to 32), num_audio_segments (`int`, defaults to 4), num_patches (`int`, defaults to
            256): the model's T, K and P ([`AvLlmProcessor.from_model_config`] copies them from an `AvLlmConfig`).
        max_video_seconds (`float`, optional): use only the first seconds of a video: its frames are sampled over
            them and its own sound track is cut to them (a separate `audio` is not cut).
        prompt_template (`str`): used when a prompt has no placeholder; `{media}` and `{question}` are filled.

    A call takes transformers' processor keywords ([`AvLlmProcessorKwargs`]), flat or per modality, e.g.
    `processor(text=..., videos=..., num_frames=8, padding="max_length", max_length=256)`.
    """

    valid_processor_kwargs = AvLlmProcessorKwargs


    def __init__(
        self,
        image_processor=None,
        feature_extractor=None,
        tokenizer=None,
        chat_template: str | None = None,
        num_frames: int = 32,
        num_audio_segments: int = 4,
        num_patches: int = 256,
        max_video_seconds: float | None = None,
        prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
        **kwargs,
    ):
        self.num_frames = num_frames
        self.num_audio_segments = num_audio_segments
        self.num_patches = num_patches
        self.max_video_seconds = max_video_seconds
        self.prompt_template = prompt_template
        if tokenizer is not None:
            missing = [t for t in (MEDIA_TOKEN, *MODALITY_TOKENS.values()) if t not in tokenizer.get_vocab()]
            if missing:
                tokenizer.add_special_tokens({"additional_special_tokens": missing})
        super().__init__(
            image_processor,
            feature_extractor,
            tokenizer,
            chat_template=chat_template if chat_template is not None else DEFAULT_CHAT_TEMPLATE,
            **kwargs,
        )

    @classmethod
    def from_model_config(cls, config, *, image_processor, feature_extractor, tokenizer, **kwargs) -> "AvLlmProcessor":
        """A processor with the frame, segment and patch counts of `config` (an [`AvLlmConfig`]); checks that the
        tokenizer gives the placeholder and modality tokens the ids the model expects."""
        settings = dict(
            num_frames=config.num_frames, num_audio_segments=config.num_audio_segments, num_patches=config.num_patches
        )
        settings.update(kwargs)
        if feature_extractor.sampling_rate != config.audio_sampling_rate:
            raise ValueError(
                f"The feature extractor samples at {feature_extractor.sampling_rate} Hz but the model expects "
                f"audio_sampling_rate={config.audio_sampling_rate}."
            )
        processor = cls(image_processor, feature_extractor, tokenizer, **settings)
        expected = {MEDIA_TOKEN: config.media_token_id, **{
            MODALITY_TOKENS[name]: token_id for name, token_id in config.modality_token_ids.items()
        }}
        for token, token_id in expected.items():
            found = tokenizer.convert_tokens_to_ids(token)
            if token_id is not None and found != token_id:
                raise ValueError(f"The tokenizer gives {token!r} id {found} but the model config expects {token_id}.")
        return processor

    @property
    def media_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(MEDIA_TOKEN)

    # transformers' name for the placeholder a processor expands (it stands for all the sample's media)
    video_token = MEDIA_TOKEN

    @property
    def video_token_id(self) -> int:
        return self.media_token_id

    def replace_video_token(self, video_inputs: dict, video_idx: int, **kwargs) -> str:
        """transformers' expansion hook: sample `video_idx`'s placeholder run, one `<av_media>` per vector the linear
        connector produces for it (`video_inputs["num_media_tokens"]`)."""
        return self.video_token * video_inputs["num_media_tokens"][video_idx]

    @property
    def sampling_rate(self) -> int:
        return self.feature_extractor.sampling_rate

    @property
    def model_input_names(self):
        return [
            "input_ids", "attention_mask", "pixel_values_videos", "video_frame_mask", "audio_input_features",
            "audio_segment_mask", "audio_is_longer",
        ]

    def num_media_tokens(self, num_frames: int, num_segments: int, *, visual: bool, audio: bool) -> int:
        """Tokens the placeholder of one sample expands to (the connector's own count)."""
        return linear_connector_token_count(
            num_frames if visual else 0, self.num_patches, num_segments if audio else 0, visual=visual, audio=audio
        )

    # -- the call ----------------------------------------------------------------------------------------------------
    def __call__(
        self,
        text: str | list[str] | None = None,
        videos: Any = None,
        audio: Any = None,
        images: Any = None,
        answers: str | list[str] | None = None,
        **kwargs: Unpack[AvLlmProcessorKwargs],
    ) -> BatchFeature:
        """Process a prompt (or a batch of prompts) with its media.

        Args:
            text: prompt(s), optionally holding a modality token and/or the placeholder (see the class docstring).
            videos / audio / images: one item per prompt (or `None` / `[]` for that sample), also nested as
                `[[item], [], ...]`: a path, bytes, a waveform (numpy/torch; its rate is `sampling_rate`, else the
                feature extractor's), frames (T, H, W, 3) or (T, 3, H, W) uint8, PIL images.
            answers: training targets; `labels` are -100 everywhere but the answer tokens (and the closing eos).
            kwargs: [`AvLlmProcessorKwargs`]; `max_length` cuts answers so that a sample fits, never the prompt or
                its media tokens (a prompt that does not fit is an error).
        """
        if text is None:
            raise ValueError("AvLlmProcessor needs `text` (the prompt or question).")
        output_kwargs = self.merged_call_kwargs(kwargs)
        texts = [text] if isinstance(text, str) else list(text)
        batch_size = len(texts)
        videos, audio, images = (sample_media(name, value, batch_size) for name, value in
                                 (("videos", videos), ("audio", audio), ("images", images)))
        answers = per_sample("answers", answers, batch_size)

        samples = []
        for index in range(batch_size):
            with naming_the_sample(index), reuse_downloads():  # a URL is downloaded once for frames and sound
                samples.append(self._load_sample(texts[index], videos[index], audio[index], images[index], output_kwargs))
        encoding: dict[str, Any] = {}
        self._add_frames(encoding, samples)
        self._add_audio(encoding, samples)

        counts, kinds = [], []
        for sample in samples:
            has_frames, has_audio = sample["frames"] is not None, sample["segments"] is not None
            if sample["modality"] is None:
                counts.append(None)
            else:
                counts.append(self.num_media_tokens(
                    len(sample["frames"]) if has_frames else 0,
                    len(sample["segments"]["input_features"]) if has_audio else 0,
                    visual=has_frames,
                    audio=has_audio,
                ))
            kinds.append(sample["kind"])
        encoding.update(self.encode_prompts([s["prompt"] for s in samples], counts, kinds, answers, output_kwargs))
        return BatchFeature(encoding, tensor_type=output_kwargs["text_kwargs"].get("return_tensors"),
                            skip_tensor_conversion=self.skip_tensor_conversion)

    def _load_sample(self, text, video, audio, image, output_kwargs: dict) -> dict[str, Any]:
        """Decide the sample's modalities, load only those media, and write its prompt."""
        use_video_audio = output_kwargs["use_video_audio"]
        if video is not None and image is not None:
            raise ValueError("give a video or an image, not both.")
        named = [key for key, token in MODALITY_TOKENS.items() if token in text]
        if len(named) > 1:
            raise ValueError(f"the prompt names several modalities ({', '.join(MODALITY_TOKENS[n] for n in named)}); use one.")
        if text.count(MEDIA_TOKEN) > 1:
            raise ValueError(f"the prompt holds the placeholder {MEDIA_TOKEN!r} {text.count(MEDIA_TOKEN)} times; use it once.")
        has_visual = video is not None or image is not None
        token = MODALITY_TOKENS[named[0]] if named else None
        may_hear = not named or named[0] in ("audio", "audio_visual")
        # the video's own sound is probed only when the sample may use it
        video_sound = (may_hear and audio is None and use_video_audio and is_media_file(video)
                       and has_audio_track(video))
        has_audio = audio is not None or video_sound
        if named:
            wants_visual, wants_audio = named[0] in ("visual", "audio_visual"), may_hear
            if wants_visual and not has_visual:
                raise ValueError(f"the prompt asks for {token} but no video or image was given.")
            if wants_audio and not has_audio:
                if video is None:
                    reason = "no audio was given"
                elif not use_video_audio:
                    reason = "no audio was given and use_video_audio=False"
                elif not is_media_file(video):
                    reason = f"no audio was given and the video ({describe(video)}) is frames without sound"
                else:
                    reason = f"no audio was given and {describe(video)} has no sound track"
                raise ValueError(f"the prompt asks for {token} but {reason}.")
        else:
            wants_visual, wants_audio = has_visual, has_audio

        frames = segments = None
        sampling = VideoSampling.from_kwargs(
            output_kwargs["videos_kwargs"], sampling="uniform", fps=2.0, num_frames=self.num_frames,
            max_seconds=self.max_video_seconds,
        )
        allow_partial = output_kwargs["allow_partial"]
        load_track = None
        if wants_audio:
            own_track = audio is None
            source = video if own_track else audio
            rate = self.audio_sampling_rate(output_kwargs["audio_kwargs"]) if in_memory_audio(source) else None
            load_track = partial(
                load_audio, source, sampling_rate=self.sampling_rate, source_sampling_rate=rate,
                max_seconds=sampling.max_seconds if own_track else None,  # the same span as the frames
                allow_partial=allow_partial,
            )
        # the video's own sound track decodes in a thread while the frames do
        beside_frames = load_track is not None and wants_visual and audio is None and is_path(video)
        with in_background(load_track) if beside_frames else nullcontext() as track:
            if wants_visual and video is not None:
                video_pixels = pixel_kwargs(output_kwargs["videos_kwargs"])
                frames = load_video(
                    video, **sampling.load_arguments(),
                    frames_transform=lambda batch: self._frames_to_pixels(batch, **video_pixels),
                    decode=output_kwargs["videos_kwargs"].get("decode") or "exact",
                    allow_partial=allow_partial,
                ).frames  # (T, 3, H, W) model pixels
            elif wants_visual:
                frames = self._frames_to_pixels(load_image(image)[None], **pixel_kwargs(output_kwargs["images_kwargs"]))
        if wants_audio:
            waveform = (load_track() if track is None else track.result()).waveform
            if not np.isfinite(waveform).all():
                raise ValueError(f"the audio ({describe(source)}) contains NaN or infinite values.")
            if len(waveform) < self.num_audio_segments:
                raise ValueError(
                    f"the audio ({describe(source)}) has {len(waveform)} samples, fewer than the "
                    f"{self.num_audio_segments} segments it is cut into."
                )
            segments = self._segment_features(waveform)

        modality = {(True, True): "audio_visual", (True, False): "visual", (False, True): "audio"}.get(
            (wants_visual, wants_audio)
        )
        kind = None if modality is None else "audio" if frames is None else "video" if video is not None else "image"
        return {
            "frames": frames, "segments": segments, "modality": modality, "kind": kind,
            "prompt": self._prompt(text, modality, output_kwargs["wrap_question"]),
        }

    def _prompt(self, text: str, modality: str | None, wrap_question: bool) -> str:
        """The prompt with its modality token right before the placeholder (or the template around the question;
        with `wrap_question=False` the text as written)."""
        if modality is None:
            if MEDIA_TOKEN in text:
                raise ValueError(f"the prompt holds the placeholder {MEDIA_TOKEN!r} but the sample has no media.")
            return TEXT_ONLY_TEMPLATE.format(question=text) if wrap_question else text
        token = MODALITY_TOKENS[modality]
        if MEDIA_TOKEN in text:  # a full prompt, used as written
            return mark_modality(text, modality)
        if not wrap_question:
            raise ValueError(
                f"the sample has media but the prompt has no placeholder {MEDIA_TOKEN!r} to put them at (with "
                "wrap_question=False the text is used as written; a chat template must write the placeholder for a "
                "media item)."
            )
        if token in text.strip() and not text.strip().startswith(token):
            # the modality token stands where its sample goes (Shu et al. §3.2): the media follow it, in the question
            return TEXT_ONLY_TEMPLATE.format(question=text.strip().replace(token, token + MEDIA_TOKEN, 1))
        question = re.sub(rf"\s*{re.escape(token)}\s*", " ", text).strip()  # a question, maybe marked
        return self.prompt_template.format(media=token + MEDIA_TOKEN, question=question)

    def _frames_to_pixels(self, frames: np.ndarray, **pixel_settings) -> np.ndarray:
        """(k, H, W, 3) uint8 frames -> (k, 3, size, size) float32 CLIP pixels, right after decoding (`pixel_settings`:
        the call's image-processor keywords)."""
        pixels = self.image_processor(list(frames), return_tensors="np", **pixel_settings)["pixel_values"]
        return np.asarray(pixels, dtype=np.float32)

    def _segment_features(self, waveform: np.ndarray) -> dict[str, torch.Tensor]:
        """A mono waveform -> CLAP features of its K equal segments: `input_features` (K, C, time, mel) and
        `is_longer` (K,). A segment longer than the extractor's window keeps its centre: the extractor would
        otherwise pick a random crop, and the same clip must always give the same tokens. For the same reason
        `is_longer` is all False (no segment is longer than the window after the crop; a "fusion" extractor would
        otherwise flag a random one, a training-time trick)."""
        window = self.feature_extractor.nb_max_samples
        pieces = []
        for segment in split_into_segments(waveform, self.num_audio_segments):
            if len(segment) > window:
                start = (len(segment) - window) // 2
                segment = segment[start : start + window]
            pieces.append(np.ascontiguousarray(segment, dtype=np.float32))
        features = self.feature_extractor(pieces, sampling_rate=self.sampling_rate, return_tensors="pt")
        return {"input_features": features["input_features"], "is_longer": torch.zeros(len(pieces), dtype=torch.bool)}

    def _add_frames(self, encoding, samples):
        if all(s["frames"] is None for s in samples):
            return
        # (B, T, 3, H, W)
        encoding["pixel_values_videos"], encoding["video_frame_mask"] = stack_padded([s["frames"] for s in samples])

    def _add_audio(self, encoding, samples):
        present = [s["segments"] for s in samples if s["segments"] is not None]
        if not present:
            return
        num_segments, *feature_shape = present[0]["input_features"].shape
        features = torch.zeros(len(samples), num_segments, *feature_shape)
        mask = torch.zeros(len(samples), num_segments, dtype=torch.bool)
        longer = torch.zeros(len(samples), num_segments, dtype=torch.bool)
        for i, sample in enumerate(samples):
            if sample["segments"] is not None:
                features[i] = sample["segments"]["input_features"]
                mask[i] = True
                longer[i] = sample["segments"]["is_longer"]
        encoding["audio_input_features"] = features  # (B, K, C, time, mel)
        encoding["audio_segment_mask"] = mask
        encoding["audio_is_longer"] = longer

    # -- agreement with a model configuration (checked before a Hub upload) ------------------------------------------
    @property
    def required_tokens(self) -> dict[str, str]:
        """The tokens the tokenizer must hold, with their role: the media placeholder and the modality tokens."""
        return {MEDIA_TOKEN: "placeholder", **dict.fromkeys(MODALITY_TOKENS.values(), "modality token")}

    def disagreements_with(self, config) -> list[str]:
        """What in this processor disagrees with the model's [`AvLlmConfig`], one sentence each (empty if nothing
        does): T, K and P, the ids of the placeholder and modality tokens, the crop size, CLAP's sampling rate and mel
        bins."""
        found = []
        for name in ("num_frames", "num_audio_segments", "num_patches"):
            ours, theirs = getattr(self, name), getattr(config, name)
            if ours != theirs:
                found.append(f"processor.{name}={ours!r} but config.{name}={theirs!r}")
        token_ids = {"media_token_id": MEDIA_TOKEN, **{
            f"{modality}_modality_token_id": token for modality, token in MODALITY_TOKENS.items()
        }}
        for attribute, token in token_ids.items():
            wanted, given = getattr(config, attribute), self.tokenizer.convert_tokens_to_ids(token)
            if wanted is not None and given != wanted:
                found.append(f"{token!r} has id {given} in the tokenizer but config.{attribute} is {wanted}")
        crop = getattr(self.image_processor, "crop_size", None)  # a dict or a transformers `SizeDict`: both have `get`
        if crop is not None and getattr(self.image_processor, "do_center_crop", False):
            height, width, size = crop.get("height"), crop.get("width"), config.vision_config.image_size
            if (height, width) != (size, size):
                found.append(f"image processor crops {height}x{width} px but vision_config.image_size is {size}")
        extractor = self.feature_extractor
        if extractor.sampling_rate != config.audio_sampling_rate:
            found.append(f"the CLAP feature extractor samples at {extractor.sampling_rate} Hz but "
                         f"config.audio_sampling_rate is {config.audio_sampling_rate}")
        if extractor.feature_size != config.audio_config.num_mel_bins:
            found.append(f"the CLAP feature extractor has {extractor.feature_size} mel bins but "
                         f"audio_config.num_mel_bins is {config.audio_config.num_mel_bins}")
        return found


def mark_modality(prompt: str, modality: str) -> str:
    """`prompt` with the modality token of `modality` ("visual", "audio", "audio_visual"), unless it already names
    it: right before the placeholder, or first (then separated by a space) in a prompt without one (a question the
    processor wraps in its template)."""
    token = MODALITY_TOKENS[modality]
    if token in prompt:
        return prompt
    return prompt.replace(MEDIA_TOKEN, token + MEDIA_TOKEN) if MEDIA_TOKEN in prompt else f"{token} {prompt}"


__all__ = ["AvLlmProcessor", "AvLlmProcessorKwargs", "DEFAULT_PROMPT_TEMPLATE", "mark_modality"]

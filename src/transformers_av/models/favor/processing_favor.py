"""`FavorProcessor`: media files and prompts -> exactly the inputs `FavorForConditionalGeneration` expects."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import BatchFeature
from transformers.processing_utils import ProcessorMixin, Unpack

from .windows import WindowPlan, audio_visual_plan
from ...media.audio import has_audio_track, load_audio
from ...media.background import in_background
from ...media.image import load_image
from ...media.remote import reuse_downloads
from ...media.frame_conversion import FrameWriter
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
    is_path,
    naming_the_sample,
    per_sample,
    sample_media,
    stack_padded,
    vicuna_chat_template,
)

if TYPE_CHECKING:  # media.py is imported lazily; this line also makes transformers ship it with the remote code
    from ...media.video import VideoClip  # noqa: F401

SAMPLING_RATE = 16000
DEFAULT_PROMPT_TEMPLATE = "USER: <Img>{placeholder}</Img> {question}\nASSISTANT:"
TEXT_ONLY_TEMPLATE = "USER: {question}\nASSISTANT:"
DEFAULT_CHAT_TEMPLATE = vicuna_chat_template("<Img><AV></Img> ")


class FavorProcessorKwargs(AudioVisualProcessingKwargs, total=False):
    """The keywords of a [`FavorProcessor`] call: transformers' `text_kwargs` (`padding`, `max_length`,
    `padding_side`, `add_special_tokens`, `return_tensors` ...), `images_kwargs` / `videos_kwargs` (the pixel settings
    of [`FavorImageProcessor`]; `num_frames`, `fps`, `do_sample_frames` and `max_seconds` for the frame sampler),
    `audio_kwargs` (`sampling_rate`: the rate of waveforms given in memory, Whisper's 16 kHz when not given), and
    `use_video_audio` / `wrap_question` / `allow_partial` (see [`AudioVisualProcessingKwargs`])."""


class FavorProcessor(AudioVisualProcessorMixin):
    r"""
    Builds the inputs of [`FavorForConditionalGeneration`] from prompts and media.

    Media per sample: a video (its sound track is used as the audio unless `audio` is given), an audio file or
    waveform, an image (shown for the whole audio), or any combination of an image/video with a separate audio.
    The audio-visual placeholder in the prompt is expanded to exactly the number of tokens the model will produce,
    computed by the same window plan the model uses (`transformers_av.window_plan`).

    Args:
        image_processor ([`FavorImageProcessor`]): frame preprocessing (224 px bicubic, CLIP mean/std).
        tokenizer: the LLM tokenizer; the placeholder token is added to it if missing.
        qformer_tokenizer: the BERT tokenizer of the instruction-aware visual Q-Former.
        feature_extractor ([`WhisperFeatureExtractor`]): Whisper log-mel, applied per 30 s chunk.
        audio_feature_extractor ([`BeatsFeatureExtractor`]): BEATs fbank, computed when `compute_audio_events`
            (video-SALMONN; FAVOR has no BEATs).
        resolutions, frame_seconds, audio_chunk_seconds, max_audio_chunks, audio_frame_mode: the model config's
            window settings (see [`FavorConfig`]); `FavorProcessor.from_model_config` copies them.
        video_fps (`float`, defaults to 2.0): frames sampled per second (`video_sampling="fps"`).
        video_sampling (`"fps"` or `"clip_ends"`): `"clip_ends"` is the official sampler (both ends of each 1 s clip).
        max_video_seconds (`float`, optional): videos longer than this are cut (with a warning).
        audio_event_min_seconds (`float`, defaults to 0): pad the BEATs input to at least this length (the official
            test data pads to 3 s).
        audio_visual_token (`str`, defaults to `"<AV>"`): the placeholder.
        prompt_template (`str`): used when a prompt has no placeholder; `{placeholder}` and `{question}` are filled.

    A call takes transformers' processor keywords ([`FavorProcessorKwargs`]), flat or per modality, e.g.
    `processor(text=..., videos=..., num_frames=8, padding="max_length", max_length=256)`.
    """

    valid_processor_kwargs = FavorProcessorKwargs


    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        qformer_tokenizer=None,
        feature_extractor=None,
        audio_feature_extractor=None,
        chat_template: str | None = None,
        resolutions: Sequence[Sequence[int]] = ((1, 3), (10, 30)),
        frame_seconds: float = 0.5,
        audio_chunk_seconds: float = 30.0,
        max_audio_chunks: int | None = None,
        audio_frame_mode: str = "exact",
        video_fps: float = 2.0,
        video_sampling: str = "fps",
        max_video_seconds: float | None = None,
        audio_event_min_seconds: float = 0.0,
        compute_audio_events: bool = True,
        audio_visual_token: str = "<AV>",
        prompt_template: str = DEFAULT_PROMPT_TEMPLATE,
        **kwargs,
    ):
        self.resolutions = [list(map(int, r)) for r in resolutions]
        self.frame_seconds = frame_seconds
        self.audio_chunk_seconds = audio_chunk_seconds
        self.max_audio_chunks = max_audio_chunks
        self.audio_frame_mode = audio_frame_mode
        self.video_fps = video_fps
        self.video_sampling = video_sampling
        self.max_video_seconds = max_video_seconds
        self.audio_event_min_seconds = audio_event_min_seconds
        self.compute_audio_events = compute_audio_events
        self.audio_visual_token = audio_visual_token
        self.prompt_template = prompt_template
        if tokenizer is not None and audio_visual_token not in tokenizer.get_vocab():
            tokenizer.add_special_tokens({"additional_special_tokens": [audio_visual_token]})
        super().__init__(
            image_processor,
            tokenizer,
            qformer_tokenizer,
            feature_extractor,
            audio_feature_extractor,
            chat_template=chat_template if chat_template is not None else DEFAULT_CHAT_TEMPLATE,
            **kwargs,
        )

    @classmethod
    def from_model_config(cls, config, *, image_processor, tokenizer, qformer_tokenizer, feature_extractor,
                          audio_feature_extractor, **kwargs) -> "FavorProcessor":
        """A processor whose window settings are those of `config` (a [`FavorConfig`])."""
        settings = dict(
            resolutions=config.resolutions,
            frame_seconds=config.frame_seconds,
            audio_chunk_seconds=config.audio_chunk_seconds,
            max_audio_chunks=config.max_audio_chunks,
            audio_frame_mode=config.audio_frame_mode,
            video_sampling=config.video_sampling,
            compute_audio_events=config.audio_config is not None,
        )
        settings.update(kwargs)
        processor = cls(image_processor, tokenizer, qformer_tokenizer, feature_extractor, audio_feature_extractor, **settings)
        if config.audio_visual_token_id is not None and processor.audio_visual_token_id != config.audio_visual_token_id:
            raise ValueError(
                f"The tokenizer gives the placeholder {processor.audio_visual_token!r} id {processor.audio_visual_token_id} "
                f"but the model expects audio_visual_token_id={config.audio_visual_token_id}."
            )
        return processor

    @staticmethod
    def get_possibly_dynamic_module(module_name):
        # our sub-processor classes are not attributes of `transformers`; resolve them before transformers' lookup
        from ..beats.feature_extraction_beats import BeatsFeatureExtractor
        from .image_processing_favor import FavorImageProcessor

        own = {cls.__name__: cls for cls in (BeatsFeatureExtractor, FavorImageProcessor)}
        return own.get(module_name) or ProcessorMixin.get_possibly_dynamic_module(module_name)

    @property
    def audio_visual_token_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(self.audio_visual_token)

    # transformers' name for the placeholder a processor expands (the placeholder stands for the video and its audio)
    @property
    def video_token(self) -> str:
        return self.audio_visual_token

    @property
    def video_token_id(self) -> int:
        return self.audio_visual_token_id

    def replace_video_token(self, video_inputs: dict, video_idx: int, **kwargs) -> str:
        """transformers' expansion hook: sample `video_idx`'s placeholder run, one `<AV>` per token of its window
        plan (`video_inputs["num_media_tokens"]`)."""
        return self.video_token * video_inputs["num_media_tokens"][video_idx]

    @property
    def model_input_names(self):
        return [
            "input_ids", "attention_mask", "pixel_values_videos", "video_frame_mask", "video_is_image",
            "qformer_input_ids", "qformer_attention_mask", "input_features", "input_features_mask",
            "audio_input_features", "audio_input_features_mask", "modality_mask",
        ]

    # -- planning ----------------------------------------------------------------------------------------------------
    def window_plan(self, num_video_frames: int, num_audio_samples: int, *, is_image: bool = False) -> WindowPlan:
        """The model's window plan for one sample (the placeholder is expanded to `plan.num_tokens`)."""
        return audio_visual_plan(self, num_video_frames, num_audio_samples, is_image=is_image, sampling_rate=SAMPLING_RATE)

    # -- the call ----------------------------------------------------------------------------------------------------
    def __call__(
        self,
        text: str | list[str] | None = None,
        videos: Any = None,
        audio: Any = None,
        images: Any = None,
        answers: str | list[str] | None = None,
        qformer_text: str | list[str] | None = None,
        **kwargs: Unpack[FavorProcessorKwargs],
    ) -> BatchFeature:
        """Process a prompt (or a batch of prompts) with its media.

        Args:
            text: prompt(s). Without the placeholder, `prompt_template` wraps the text as the question (unless
                `wrap_question=False`); with it (once), the prompt is used as written.
            videos / audio / images: one item per prompt (or `None` / `[]` for that sample), also nested as
                `[[item], [], ...]`: a path, bytes, a waveform (numpy/torch; its rate is `sampling_rate`, else
                Whisper's 16 kHz), frames (T, H, W, 3) or (T, 3, H, W) uint8, PIL images.
            answers: training targets; `labels` are -100 everywhere but the answer tokens (and the closing eos).
            qformer_text: the instruction given to the visual Q-Former (default: the question).
            kwargs: [`FavorProcessorKwargs`]; `max_length` cuts answers so that a sample fits, never the prompt or
                its placeholder run (a prompt that does not fit is an error).
        """
        if text is None:
            raise ValueError("FavorProcessor needs `text` (the prompt or question).")
        output_kwargs = self.merged_call_kwargs(kwargs)
        texts = [text] if isinstance(text, str) else list(text)
        batch_size = len(texts)
        videos, audio, images = (sample_media(name, value, batch_size) for name, value in
                                 (("videos", videos), ("audio", audio), ("images", images)))
        answers = per_sample("answers", answers, batch_size)
        qformer_texts = per_sample("qformer_text", qformer_text, batch_size)
        for i, prompt in enumerate(texts):  # before any media is decoded
            count = prompt.count(self.audio_visual_token)
            if count > 1:
                raise ValueError(f"Prompt {i} holds the placeholder {self.audio_visual_token!r} {count} times; use it "
                                 "once per sample.")

        samples = []
        for index in range(batch_size):
            with naming_the_sample(index), reuse_downloads():  # a URL is downloaded once for frames and sound
                samples.append(self._load_sample_media(videos[index], audio[index], images[index], output_kwargs))

        encoding: dict[str, Any] = {}
        self._add_video(encoding, samples)
        self._add_audio(encoding, samples)
        plans = [
            self.window_plan(
                0 if s["frames"] is None else len(s["frames"]),
                0 if s["sound"] is None else len(s["sound"]["waveform"]),
                is_image=s["is_image"],
            )
            for s in samples
        ]
        # [video, audio] per sample: which modalities the sample really has (zeros stay zeros in the model)
        encoding["modality_mask"] = torch.tensor(
            [[float(s["frames"] is not None), float(s["sound"] is not None)] for s in samples]
        )
        self._add_text(encoding, texts, answers, qformer_texts, samples, plans, output_kwargs)
        return BatchFeature(encoding, tensor_type=output_kwargs["text_kwargs"].get("return_tensors"),
                            skip_tensor_conversion=self.skip_tensor_conversion)

    def _load_sample_media(self, video, audio, image, output_kwargs: dict) -> dict[str, Any]:
        """Decode one sample's media: pixels (T, 3, size, size), whether they are one image, and its sound (the 16 kHz
        waveform and its features, `_load_sound`)."""
        frames, is_image, sound = None, False, None
        if video is not None and image is not None:
            raise ValueError("give a video or an image, not both.")
        allow_partial = output_kwargs["allow_partial"]
        if video is not None:
            sampling = VideoSampling.from_kwargs(
                output_kwargs["videos_kwargs"], sampling=self.video_sampling, fps=self.video_fps, num_frames=None,
                max_seconds=self.max_video_seconds,
            )
            video_pixels = pixel_kwargs(output_kwargs["videos_kwargs"])
            side = self.image_processor.output_size(video_pixels.get("size"))
            decode = output_kwargs["videos_kwargs"].get("decode") or "exact"
            # the video's own sound track decodes (and its features are computed) in a thread while the frames decode
            own_track = audio is None and output_kwargs["use_video_audio"] and is_path(video) and has_audio_track(video)
            track_loader = in_background(self._load_sound, video, None, allow_partial) if own_track else nullcontext()
            with track_loader as track:
                clip = load_video(
                    video, **sampling.load_arguments(),
                    # each kept (H, W, 3) uint8 frame becomes its (3, side, side) model pixels right after decoding,
                    # written straight into the clip's array: one frame at a time is held at full resolution
                    frame_writer=FrameWriter(
                        (3, side, side), np.float32,
                        lambda frame, row: self.image_processor.preprocess_frames(
                            frame[None], out=torch.from_numpy(row)[None], **video_pixels
                        ),
                    ),
                    # "fast": FFmpeg's scaler resizes to the model's size (area averaging) as it converts to RGB
                    decode=decode, size=(side, side) if decode == "fast" else None,
                    allow_partial=allow_partial,
                )
            frames = clip.frames  # (T, 3, size, size) model pixels
            if track is not None:
                sound = track.result()
        if image is not None:
            image_pixels = pixel_kwargs(output_kwargs["images_kwargs"])
            frames = self.image_processor.preprocess_frames(load_image(image)[None], **image_pixels).numpy()
            is_image = True
        if audio is not None:
            rate = self.audio_sampling_rate(output_kwargs["audio_kwargs"]) if in_memory_audio(audio) else None
            sound = self._load_sound(audio, rate, allow_partial)
        return {"frames": frames, "is_image": is_image, "sound": sound}

    def _load_sound(self, source, rate: int | None, allow_partial: bool) -> dict[str, Any] | None:
        """One sample's sound (a file's track, or a waveform at ``rate``): the 16 kHz waveform, its Whisper log-mel
        features per 30 s piece (``(80, 3000 * K)`` and its mask) and the BEATs fbank (``(frames, 128)``, or None),
        or None when there is no sound (an empty track)."""
        waveform = load_audio(
            source, sampling_rate=SAMPLING_RATE, source_sampling_rate=rate, allow_partial=allow_partial
        ).waveform
        if not np.isfinite(waveform).all():
            raise ValueError(f"the audio ({describe(source)}) contains NaN or infinite values.")
        if self.max_audio_chunks is not None:
            waveform = waveform[: int(self.max_audio_chunks * self.audio_chunk_seconds * SAMPLING_RATE)]
        if len(waveform) == 0:
            return None
        chunk = int(self.audio_chunk_seconds * SAMPLING_RATE)
        # each 30 s piece is a separate Whisper input, normalised on its own, as Whisper was trained; one call per
        # piece (the same values): a call's STFT works on all its pieces at once, ~10 MB per piece
        pieces = [
            self.feature_extractor(
                [waveform[start : start + chunk]], sampling_rate=SAMPLING_RATE, padding="max_length", max_length=chunk,
                return_attention_mask=True, return_tensors="pt",
            )
            for start in range(0, len(waveform), chunk)
        ]
        fbank = None
        if self.compute_audio_events:
            minimum = int(self.audio_event_min_seconds * SAMPLING_RATE)
            padded = np.pad(waveform, (0, minimum - len(waveform))) if len(waveform) < minimum else waveform
            fbank = self.audio_feature_extractor(padded, sampling_rate=SAMPLING_RATE, return_tensors="pt")
            fbank = fbank["input_features"][0]
        return {
            "waveform": waveform,
            "whisper": torch.cat([piece["input_features"][0] for piece in pieces], dim=-1),  # (80, 3000 * K)
            "whisper_mask": torch.cat([piece["attention_mask"][0] for piece in pieces], dim=-1).bool(),  # (3000 * K,)
            "fbank": fbank,
        }

    def _add_video(self, encoding, samples):
        if all(s["frames"] is None for s in samples):
            return
        # (B, T, 3, size, size); one sample: the array the frames were decoded into
        encoding["pixel_values_videos"], encoding["video_frame_mask"] = stack_padded([s["frames"] for s in samples])
        encoding["video_is_image"] = torch.tensor([s["is_image"] for s in samples])

    def _add_audio(self, encoding, samples):
        sounds = [s["sound"] for s in samples]
        if all(sound is None for sound in sounds):
            return
        # (B, 80, 3000 * K) Whisper log-mel, each 30 s piece's own padding masked
        encoding["input_features"], _ = stack_padded([None if s is None else s["whisper"] for s in sounds], dim=-1)
        encoding["input_features_mask"], _ = stack_padded([None if s is None else s["whisper_mask"] for s in sounds])
        if self.compute_audio_events:  # (B, frames, 128) BEATs fbank
            encoding["audio_input_features"], encoding["audio_input_features_mask"] = stack_padded(
                [None if s is None else s["fbank"] for s in sounds]
            )

    def _add_text(self, encoding, texts, answers, qformer_texts, samples, plans, output_kwargs):
        token = self.audio_visual_token
        prompts, counts, kinds, instructions = [], [], [], []
        for i, (text, sample) in enumerate(zip(texts, samples)):
            has_media = sample["frames"] is not None or sample["sound"] is not None
            count = text.count(token)  # at most 1: checked in __call__
            if count == 1 and not has_media:
                raise ValueError(f"Prompt {i} holds the placeholder {token!r} but sample {i} has no video, audio or image.")
            if count == 1:
                prompt, question = text, self._question_of(text)
            elif has_media and not output_kwargs["wrap_question"]:
                raise ValueError(
                    f"Prompt {i} has media but no placeholder {token!r} to put them at (with wrap_question=False the "
                    "text is used as written; a chat template must write the placeholder for a media item)."
                )
            elif not output_kwargs["wrap_question"]:
                prompt, question = text, text
            elif has_media:
                prompt, question = self.prompt_template.format(placeholder=token, question=text), text
            else:
                prompt, question = TEXT_ONLY_TEMPLATE.format(question=text), text
            prompts.append(prompt)
            instructions.append(qformer_texts[i] if qformer_texts[i] is not None else question)
            counts.append(plans[i].num_tokens if has_media else None)
            kinds.append(None if not has_media else "image" if sample["is_image"] else
                         "video" if sample["frames"] is not None else "audio")

        encoding.update(self.encode_prompts(prompts, counts, kinds, answers, output_kwargs))
        qformer = self.qformer_tokenizer(instructions, padding="longest", truncation=True, max_length=512, return_tensors="pt")
        encoding["qformer_input_ids"] = qformer["input_ids"]
        encoding["qformer_attention_mask"] = qformer["attention_mask"]

    def _question_of(self, prompt: str) -> str:
        """The question inside a prompt written with the placeholder (the visual Q-Former's instruction)."""
        before, after = self.prompt_template.format(placeholder=self.audio_visual_token, question="\0").split("\0")
        if prompt.startswith(before) and prompt.endswith(after) and len(prompt) >= len(before) + len(after):
            return prompt[len(before) : len(prompt) - len(after)]
        return prompt.replace(self.audio_visual_token, "").replace("<Img></Img>", "").strip()

    # -- agreement with a model configuration (checked before a Hub upload) ------------------------------------------
    @property
    def required_tokens(self) -> dict[str, str]:
        """The tokens the tokenizer must hold, with their role: the audio-visual placeholder."""
        return {self.audio_visual_token: "placeholder"}

    def disagreements_with(self, config) -> list[str]:
        """What in this processor disagrees with the model's [`FavorConfig`], one sentence each (empty if nothing
        does): the placeholder id, the window settings, BEATs features, the image size and Whisper's mel bins."""
        found = []
        if config.audio_visual_token_id is not None and self.audio_visual_token_id != config.audio_visual_token_id:
            found.append(f"placeholder {self.audio_visual_token!r} has id {self.audio_visual_token_id} in the "
                         f"tokenizer but config.audio_visual_token_id is {config.audio_visual_token_id}")
        for name in ("resolutions", "frame_seconds", "audio_chunk_seconds", "max_audio_chunks", "audio_frame_mode"):
            ours, theirs = getattr(self, name), getattr(config, name)
            if (list(map(list, ours)) if name == "resolutions" else ours) != theirs:
                found.append(f"processor.{name}={ours!r} but config.{name}={theirs!r}")
        has_beats = config.audio_config is not None
        if self.compute_audio_events != has_beats:
            found.append(f"processor.compute_audio_events={self.compute_audio_events} but the model "
                         f"{'has' if has_beats else 'has no'} BEATs encoder")
        if self.image_processor.size != config.vision_config.image_size:
            found.append(f"image processor size {self.image_processor.size} but vision_config.image_size "
                         f"{config.vision_config.image_size}")
        if self.feature_extractor.feature_size != config.speech_config.num_mel_bins:
            found.append(f"Whisper feature extractor has {self.feature_extractor.feature_size} mel bins but "
                         f"speech_config.num_mel_bins is {config.speech_config.num_mel_bins}")
        return found


__all__ = ["FavorProcessor", "FavorProcessorKwargs", "DEFAULT_CHAT_TEMPLATE", "DEFAULT_PROMPT_TEMPLATE"]

"""Configuration of the Audio-Visual LLM (Shu et al., 2023): CLIP frames + CLAP segments, linear projectors, an LLM."""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, ClapAudioConfig, CLIPVisionConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .token_counts import clap_flat_token_size, clip_num_patches, linear_connector_token_count

#: The prompt words that pick a sample's modalities (see `AvLlmConfig`).
MODALITY_TOKENS = {"visual": "<VIS>", "audio": "<AUD>", "audio_visual": "<AUD_VIS>"}
MEDIA_TOKEN = "<av_media>"

CLIP_VIT_L_14 = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
                 "image_size": 224, "patch_size": 14, "projection_dim": 768}


@strict
class AvLlmConfig(PreTrainedConfig):
    r"""
    Composite configuration of [`AvLlmForConditionalGeneration`], the Audio-Visual LLM of Shu et al. (2023).

    Sub-configurations:
        text_config: the causal LM (Llama / Vicuna by default).
        vision_config ([`CLIPVisionConfig`], ViT-L/14 at 224 px by default): per frame, its [CLS] token becomes a
            temporal token and its patch tokens, averaged over the frames, the spatial tokens.
        audio_config ([`ClapAudioConfig`], HTSAT by default): each of the `num_audio_segments` audio segments is
            encoded and its whole last hidden state flattened into one audio token.

    The LLM sees, at the expanded media placeholder of a prompt, `[T temporal | P spatial | K audio]` tokens (see
    `transformers_av.models.linear_connector_token_count`); a modality token in the prompt (`<VIS>`, `<AUD>`
    or `<AUD_VIS>`) says which of the blocks a sample gets, and only the encoders it names run.

    Args:
        num_frames (`int`, defaults to 32): frames the processor samples uniformly over a video (T).
        num_audio_segments (`int`, defaults to 4): equal segments the audio is cut into (K).
        audio_sampling_rate (`int`, defaults to 48000): sampling rate of the audio fed to CLAP.
        vision_feature_layer (`int`, defaults to -1): hidden state of the CLIP tower the tokens are read from
            (`hidden_states` indexing: -1 is the last layer, -2 the penultimate).
        vision_post_layernorm (`bool`, defaults to `False`): apply CLIP's `post_layernorm` to the tokens read.
        projector_bias (`bool`, defaults to `True`): whether the three linear projectors have a bias.
        media_token_id (`int`, optional): id of the placeholder the processor expands to the media tokens.
        visual_modality_token_id, audio_modality_token_id, audio_visual_modality_token_id (`int`, optional): ids of
            `<VIS>`, `<AUD>` and `<AUD_VIS>`. A sample whose prompt holds `<VIS>` uses its frames only, `<AUD>` its
            audio only, `<AUD_VIS>` both; its other media are neither encoded nor projected. (Not to be confused
            with `FavorConfig.audio_visual_token_id`, FAVOR's placeholder: here the placeholder is `media_token_id`.)
        run_absent_encoders (`"distributed"`, `"always"` or `"never"`, defaults to `"distributed"`): while training,
            run the encoders and projectors a batch does not use on a zero dummy input, times 0, so every rank of a
            DDP / FSDP / ZeRO-3 job runs the same modules (`"distributed"`: only when more than one process runs).
    """

    model_type = "av_llm"
    # what `Trainer` leaves out of the predictions it hands `compute_metrics`: the logits stay alone
    keys_to_ignore_at_inference = [
        "cache", "past_key_values", "image_outputs", "video_outputs", "audio_outputs", "media_embeds",
    ]
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
        "vision_config": SubConfigSpec(config_class=CLIPVisionConfig, init_kwargs=CLIP_VIT_L_14),
        "audio_config": SubConfigSpec(config_class=ClapAudioConfig),
    }

    text_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None

    num_frames: int = 32
    num_audio_segments: int = 4
    audio_sampling_rate: int = 48000
    vision_feature_layer: int = -1
    vision_post_layernorm: bool = False
    projector_bias: bool = True
    media_token_id: int | None = None
    visual_modality_token_id: int | None = None
    audio_modality_token_id: int | None = None
    audio_visual_modality_token_id: int | None = None
    run_absent_encoders: Literal["distributed", "always", "never"] = "distributed"
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self._check_consistency()

    @property
    def num_patches(self) -> int:
        """P, the spatial tokens of a visual sample (256 for ViT-L/14 at 224 px)."""
        return clip_num_patches(self.vision_config)

    @property
    def audio_token_size(self) -> int:
        """Width of one flattened CLAP segment token (49,152 for HTSAT)."""
        return clap_flat_token_size(self.audio_config)

    @property
    def modality_token_ids(self) -> dict[str, int | None]:
        """`{"visual": <VIS> id, "audio": <AUD> id, "audio_visual": <AUD_VIS> id}`."""
        return {
            "visual": self.visual_modality_token_id,
            "audio": self.audio_modality_token_id,
            "audio_visual": self.audio_visual_modality_token_id,
        }

    @property
    def num_media_tokens(self) -> int:
        """Tokens at the placeholder of an audio-visual sample, T + P + K (the connector's own count)."""
        return linear_connector_token_count(
            self.num_frames, self.num_patches, self.num_audio_segments, visual=True, audio=True
        )

    # Description for model cards -------------------------------------------------------------------------------
    def architecture_rows(self, *, video_fps: float | None = None) -> list[tuple[str, str, str]]:
        """(part, module, configuration) rows describing the architecture: the CLIP and CLAP encoders with T, P and
        K, the projectors, the LLM and the media tokens per modality. `video_fps` is unused: the Audio-Visual LLM
        samples a fixed number of frames over the whole video."""
        vision, audio, text = self.vision_config, self.audio_config, self.text_config
        frames, patches, segments = self.num_frames, self.num_patches, self.num_audio_segments
        layer = "last layer" if self.vision_feature_layer == -1 else f"hidden state {self.vision_feature_layer}"
        width = text.hidden_size
        return [
            ("visual encoder", "CLIP ViT",
             f"{vision.num_hidden_layers} layers x {vision.hidden_size}, {vision.image_size} px, patch "
             f"{vision.patch_size} ({layer}); {frames} frames sampled uniformly over the video -> T = {frames} "
             f"temporal tokens (one [CLS] per frame) + P = {patches} spatial tokens (patch tokens averaged over the "
             "frames)"),
            ("audio encoder", "CLAP HTSAT",
             f"{len(audio.depths)} Swin stages (depths {list(audio.depths)}), width {audio.hidden_size}, "
             f"{audio.num_mel_bins} mel bins at {self.audio_sampling_rate} Hz; the audio is cut into K = {segments} "
             f"equal segments, each last hidden state flattened into one {self.audio_token_size:,}-value token"),
            ("connector", "three linear projectors",
             f"temporal {vision.hidden_size} -> {width}, spatial {vision.hidden_size} -> {width}, audio "
             f"{self.audio_token_size:,} -> {width}; bias: {self.projector_bias}"),
            ("LLM", text.model_type,
             f"{text.num_hidden_layers} layers x {text.hidden_size}, vocabulary {text.vocab_size}"),
            ("media tokens per video", "T + P + K",
             f"{self.num_media_tokens} at the placeholder with `<AUD_VIS>` ({frames} + {patches} + {segments}); "
             f"{frames + patches} with `<VIS>`; {segments} with `<AUD>`"),
        ]

    def card_variables(self) -> dict[str, str | int]:
        """The values the Audio-Visual LLM card template quotes (`hub_cards/av_llm.md`)."""
        return {
            "image_size": self.vision_config.image_size,
            "num_frames": self.num_frames,
            "num_patches": self.num_patches,
            "num_audio_segments": self.num_audio_segments,
            "num_media_tokens": self.num_media_tokens,
            "audio_sampling_khz": f"{self.audio_sampling_rate / 1000:g}",
        }

    def _check_consistency(self):
        def fail(message):
            raise ValueError(f"Invalid AvLlmConfig: {message}")

        for name in ("num_frames", "num_audio_segments", "audio_sampling_rate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                fail(f"{name} must be a positive integer, got {value!r}.")
        layers = self.vision_config.num_hidden_layers
        if not -(layers + 1) <= self.vision_feature_layer <= layers:
            fail(f"vision_feature_layer ({self.vision_feature_layer}) must index the {layers + 1} CLIP hidden states.")
        ids = {
            "media_token_id": self.media_token_id,
            "visual_modality_token_id": self.visual_modality_token_id,
            "audio_modality_token_id": self.audio_modality_token_id,
            "audio_visual_modality_token_id": self.audio_visual_modality_token_id,
        }
        vocab = self.text_config.vocab_size
        for name, value in ids.items():
            if value is not None and not 0 <= value < vocab:
                fail(
                    f"{name} ({value}) must be an id of the LLM vocabulary (0..{vocab - 1}); add the token to the "
                    "tokenizer and resize the embeddings."
                )
        given = [value for value in ids.values() if value is not None]
        if len(given) != len(set(given)):
            fail(f"the media and modality token ids must differ, got {ids}.")


__all__ = ["MEDIA_TOKEN", "MODALITY_TOKENS", "AvLlmConfig"]

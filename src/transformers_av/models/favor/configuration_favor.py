"""Configuration of FAVOR / video-SALMONN: encoders, the causal multi-resolution Q-Former connector and the LLM."""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, InstructBlipQFormerConfig, PreTrainedConfig, WhisperConfig
from transformers.configuration_utils import SubConfigSpec

from ..beats.configuration_beats import BeatsConfig


@strict
class FavorConfig(PreTrainedConfig):
    r"""
    Composite configuration of [`FavorForConditionalGeneration`]. With `audio_config=None` it describes FAVOR (Whisper +
    InstructBLIP, one resolution); with a BEATs `audio_config` and two resolutions, video-SALMONN.

    Sub-configurations:
        text_config: the causal LM (any model `AutoModelForCausalLM` builds; Llama/Vicuna by default).
        speech_config ([`WhisperConfig`]): only its encoder is built.
        audio_config ([`BeatsConfig`], optional): the audio-event encoder; `None` drops it (FAVOR).
        vision_config ([`InstructBlipVisionConfig`] by default): the ViT. Its `model_type` picks the visual encoder
            part (`modeling/visual_encoders.py`): `instructblip_vision_model` (ViT + the instruction-aware Q-Former of
            `qformer_config`), `clip_vision_model` (CLIP patches pooled to `num_query_tokens` per frame), or any type
            registered with `register_visual_encoder`.
        qformer_config ([`InstructBlipQFormerConfig`]): the instruction-aware visual Q-Former (InstructBLIP only).

    Args:
        num_query_tokens (`int`, defaults to 32):
            Visual Q-Former queries per frame, i.e. visual tokens per frame.
        frame_seconds (`float`, defaults to 0.5):
            Length of one synchronised frame.
        audio_frames_per_frame (`int`, defaults to 25):
            Whisper frames (50 Hz) per synchronised frame. Must not exceed `num_query_tokens`: the audio frames of a
            frame are paired token by token with its visual tokens and zero-padded up to `num_query_tokens`.
        resolutions (`list[list[int]]`, defaults to `[[1, 3], [10, 30]]`):
            `[frames_per_window, queries_per_window]` per resolution, all sharing one Q-Former. Every resolution
            must yield the same number of tokens per coarsest window, and the coarsest window length must be a
            multiple of every other one.
        resolution_merge (`"concat"` or `"sum"`, defaults to `"concat"`):
            `"concat"`: the resolutions' outputs are concatenated along features and one Linear maps them to the LLM
            width (the released checkpoints). `"sum"`: one Linear per resolution, summed (the video-SALMONN paper).
        causal_attention (`"future"`, `"past"` or `"none"`, defaults to `"past"`):
            Frame-level self-attention over a window's input features in every connector layer. `"past"`: frame i
            attends frames j <= i (the papers' wording). `"future"`: frame i attends frames j >= i (what the
            official code computes; converted checkpoints use it). `"none"`: no such block.
        audio_visual_sync (`"frame"` or `"none"`, defaults to `"frame"`):
            `"frame"`: token k of frame t is `[visual_k(t) | audio(25t + k)]`, the papers' frame-level synchronisation.
            `"none"`: the ablation without synchronisation (FAVOR Table 4, video-SALMONN Table 4): the visual and the
            audio tokens of a frame enter the Q-Former side by side as separate tokens (`[visual_k(t) | 0]` then
            `[0 | audio(25t + k)]`, twice the tokens per frame) instead of paired in one token, so the two streams
            meet only through attention, as in Video-LLaMA.
        masked_resolutions (`list[int]`, optional):
            Indices into `resolutions` whose Q-Former outputs are replaced by zeros before the projection into the
            LLM (video-SALMONN Table 5: "we apply zero masks to the output query of one resolution level"); meant
            for inference on a model trained with every resolution. Default: none.
        connector_hidden_size, connector_num_hidden_layers, connector_num_attention_heads, connector_intermediate_size,
        connector_hidden_act, connector_layer_norm_eps, connector_dropout: the connector Q-Former's BERT shape.
        max_window_positions (`int`, defaults to 4096): rows of the in-window position-embedding table.
        joint_layer_norm_eps (`float`, defaults to 1e-5): eps of the LayerNorm over the joint features.
        vision_output_layer_norm_eps (`float`, defaults to 1e-5):
            eps of the LayerNorm on the ViT output (`ln_vision`, 1e-5 in InstructBLIP while its blocks use 1e-6).
        diversity_loss_weight (`float`, defaults to 0.01): weight of the diversity loss added to the LM loss.
        diversity_loss_resolutions (`list[int]`, optional):
            Indices into `resolutions` whose queries get the diversity loss; default: the coarsest only (the paper).
        audio_chunk_seconds (`float`, defaults to 30.0): Whisper's fixed input length; longer audio is chunked.
        max_audio_chunks (`int`, optional): keep at most this many chunks (`1` = the official 30 s truncation).
        audio_frame_mode (`"exact"` or `"whole_chunks"`, defaults to `"exact"`):
            `"exact"`: the audio covers ceil(duration / frame_seconds) frames. `"whole_chunks"`: every started chunk
            counts in full (60 frames per 30 s, as the official code does).
        audio_visual_token_id (`int`, optional): id of the placeholder token the processor expands.
        video_sampling (`"fps"` or `"clip_ends"`, defaults to `"fps"`): how the processor samples frames (kept here
            so a converted checkpoint carries it).
        run_absent_encoders (`"distributed"`, `"always"` or `"never"`, defaults to `"distributed"`):
            While training, a batch that lacks a modality (no frames, no audio, no media at all) still runs every
            encoder, projection and the connector on a zero dummy input whose contribution is multiplied by 0, so
            every process of a DDP / FSDP / DeepSpeed job runs the same modules and no rank waits for gradients or
            parameter shards another rank never produces. `"distributed"`: only when `torch.distributed` runs more
            than one process; `"always"`; `"never"`. Outputs are the same in every case.
    """

    model_type = "favor"
    # what `Trainer` leaves out of the predictions it hands `compute_metrics`: the logits stay alone
    keys_to_ignore_at_inference = [
        "cache", "past_key_values", "image_outputs", "video_outputs", "audio_outputs", "lm_loss", "diversity_loss", "audio_visual_embeds",
    ]
    sub_configs_defaults = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama"),
        "speech_config": SubConfigSpec(
            config_class=WhisperConfig,
            init_kwargs={"d_model": 1280, "encoder_layers": 32, "encoder_attention_heads": 20, "encoder_ffn_dim": 5120},
        ),
        "audio_config": SubConfigSpec(config_class=BeatsConfig, optional=True),
        # any vision config whose model_type has a registered visual encoder part (modeling/visual_encoders.py)
        "vision_config": SubConfigSpec(config_class=AutoConfig, model_type="instructblip_vision_model"),
        "qformer_config": SubConfigSpec(config_class=InstructBlipQFormerConfig, init_kwargs={"vocab_size": 30523}),
    }

    text_config: dict | PreTrainedConfig | None = None
    speech_config: dict | PreTrainedConfig | None = None
    audio_config: dict | PreTrainedConfig | None = None
    vision_config: dict | PreTrainedConfig | None = None
    qformer_config: dict | PreTrainedConfig | None = None

    num_query_tokens: int = 32
    frame_seconds: float = 0.5
    audio_frames_per_frame: int = 25
    resolutions: list | None = None
    resolution_merge: Literal["concat", "sum"] = "concat"
    causal_attention: Literal["future", "past", "none"] = "past"
    audio_visual_sync: Literal["frame", "none"] = "frame"
    masked_resolutions: list | None = None
    connector_hidden_size: int = 768
    connector_num_hidden_layers: int = 2
    connector_num_attention_heads: int = 12
    connector_intermediate_size: int = 3072
    connector_hidden_act: str = "gelu"
    connector_layer_norm_eps: float = 1e-12
    connector_dropout: float = 0.1
    max_window_positions: int = 4096
    joint_layer_norm_eps: float = 1e-5
    vision_output_layer_norm_eps: float = 1e-5
    diversity_loss_weight: float = 0.01
    diversity_loss_resolutions: list | None = None
    audio_chunk_seconds: float = 30.0
    max_audio_chunks: int | None = None
    audio_frame_mode: Literal["exact", "whole_chunks"] = "exact"
    audio_visual_token_id: int | None = None
    video_sampling: Literal["fps", "clip_ends"] = "fps"
    run_absent_encoders: Literal["distributed", "always", "never"] = "distributed"
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.resolutions is None:
            self.resolutions = [[1, 3], [10, 30]] if self.audio_config is not None else [[10, 32]]
        self.resolutions = [[int(k), int(n)] for k, n in self.resolutions]
        if not self.resolutions:
            raise ValueError("Invalid FavorConfig: `resolutions` must list at least one [frames_per_window, "
                             "queries_per_window] pair.")
        if self.diversity_loss_resolutions is None:
            coarsest = max(range(len(self.resolutions)), key=lambda i: self.resolutions[i][0])
            self.diversity_loss_resolutions = [coarsest]
        self._check_consistency()

    # Derived sizes -------------------------------------------------------------------------------------------------
    @property
    def visual_feature_size(self) -> int:
        """Width of one visual token, from the sub-configurations alone: InstructBLIP's frames leave through its
        visual Q-Former (`qformer_config.hidden_size`), any other vision tower with its own `hidden_size` (a visual
        encoder part registered with another width is refused when the model is built). Audio streams are projected
        to it."""
        if self.uses_instruction_qformer:
            return self.qformer_config.hidden_size
        return self.vision_config.hidden_size

    @property
    def uses_instruction_qformer(self) -> bool:
        """Whether the visual encoder is InstructBLIP's (whose Q-Former reads the instruction text)."""
        return self.vision_config.model_type == "instructblip_vision_model"

    @property
    def joint_feature_size(self) -> int:
        """Width of a synchronised token: [visual | speech | audio events]."""
        streams = 3 if self.audio_config is not None else 2
        return streams * self.visual_feature_size

    @property
    def tokens_per_frame(self) -> int:
        """Q-Former input tokens per synchronised frame: the visual tokens, each paired with an audio frame (twice as
        many, visual then audio, without synchronisation)."""
        return self.num_query_tokens * (1 if self.audio_visual_sync == "frame" else 2)

    @property
    def coarsest_window_frames(self) -> int:
        return max(k for k, _ in self.resolutions)

    @property
    def tokens_per_coarsest_window(self) -> int:
        k, n = self.resolutions[0]
        return n * (self.coarsest_window_frames // k)

    @property
    def tokens_per_second(self) -> float:
        """LLM tokens the connector produces per second of video (in steady state: whole coarsest windows)."""
        return self.tokens_per_coarsest_window / (self.coarsest_window_frames * self.frame_seconds)

    # Description for model cards -------------------------------------------------------------------------------
    def architecture_rows(self, *, video_fps: float | None = None) -> list[tuple[str, str, str]]:
        """(part, module, configuration) rows describing the architecture: encoders, synchronisation, the connector's
        resolutions, the LLM and its tokens per second of video. `video_fps` is the processor's frame rate."""
        vision, qformer, speech, audio, text = (
            self.vision_config, self.qformer_config, self.speech_config, self.audio_config, self.text_config
        )
        resolutions = ", ".join(
            f"{k} frame{'s' if k > 1 else ''} ({self._seconds(k)}) x {n} queries" for k, n in self.resolutions
        )
        return [
            ("visual encoder", "InstructBLIP ViT + Q-Former",
             f"{vision.num_hidden_layers} layers x {vision.hidden_size}, {vision.image_size} px, patch "
             f"{vision.patch_size}; Q-Former {qformer.num_hidden_layers} layers x {qformer.hidden_size}; "
             f"{self.num_query_tokens} tokens per frame" + (f"; {video_fps:g} frames per second" if video_fps else "")),
            ("speech encoder", "Whisper encoder",
             f"{speech.encoder_layers} layers x {speech.d_model}, {speech.num_mel_bins} mel bins, "
             f"{self.audio_chunk_seconds:g} s chunks, 50 frames per second"),
            ("audio-event encoder", "BEATs" if audio is not None else "none",
             f"{audio.encoder_layers} layers x {audio.encoder_embed_dim}, {audio.num_mel_bins} fbank bins"
             if audio is not None else "FAVOR hears sounds through Whisper only"),
            ("synchronisation", "frame-level",
             f"one frame every {self.frame_seconds:g} s; {self.audio_frames_per_frame} audio frames per frame; "
             f"joint width {self.joint_feature_size}"),
            ("connector", "causal multi-resolution Q-Former" if len(self.resolutions) > 1 else "causal Q-Former",
             f"resolutions: {resolutions}; merge: {self.resolution_merge}; causal attention: {self.causal_attention}; "
             f"{self.connector_num_hidden_layers} layers x {self.connector_hidden_size}"),
            ("LLM", text.model_type,
             f"{text.num_hidden_layers} layers x {text.hidden_size}, vocabulary {text.vocab_size}"),
            ("tokens per second of video", "",
             f"{self.tokens_per_second:g} ({self.tokens_per_coarsest_window} per "
             f"{self._seconds(self.coarsest_window_frames)} window)"),
        ]

    def card_variables(self) -> dict[str, str | int]:
        """The values the FAVOR and video-SALMONN card templates quote (`hub_cards/favor.md`, `video_salmonn.md`)."""
        return {"frame_seconds": f"{self.frame_seconds:g}", "image_size": self.vision_config.image_size}

    def _seconds(self, frames: int) -> str:
        return f"{frames * self.frame_seconds:g} s"

    def _check_consistency(self):
        def fail(message):
            raise ValueError(f"Invalid FavorConfig: {message}")

        if not self.resolutions:
            fail("`resolutions` must list at least one [frames_per_window, queries_per_window] pair.")
        for k, n in self.resolutions:
            if k < 1 or n < 1:
                fail(f"every resolution needs frames_per_window >= 1 and queries >= 1, got {[k, n]}.")
        coarsest = self.coarsest_window_frames
        counts = {}
        for k, n in self.resolutions:
            if coarsest % k:
                fail(f"the coarsest window ({coarsest} frames) must be a multiple of every window length, got {k}.")
            counts[(k, n)] = n * coarsest // k
        if len(set(counts.values())) != 1:
            detail = ", ".join(f"{k} frames x {n} queries -> {c}" for (k, n), c in counts.items())
            fail(
                "every resolution must produce the same number of tokens (windows x queries) so their outputs can be "
                f"merged token by token; per {coarsest} frames: {detail}."
            )
        if len({k for k, _ in self.resolutions}) != len(self.resolutions):
            fail(f"two resolutions share a window length: {self.resolutions}.")
        for i in self.diversity_loss_resolutions:
            if not 0 <= i < len(self.resolutions):
                fail(f"diversity_loss_resolutions index {i} is outside resolutions (0..{len(self.resolutions) - 1}).")
        for i in self.masked_resolutions or []:
            if not 0 <= i < len(self.resolutions):
                fail(f"masked_resolutions index {i} is outside resolutions (0..{len(self.resolutions) - 1}).")
        if self.audio_frames_per_frame > self.num_query_tokens:
            fail(
                f"audio_frames_per_frame ({self.audio_frames_per_frame}) cannot exceed num_query_tokens "
                f"({self.num_query_tokens}): audio frames are paired with the visual tokens of their frame."
            )
        window_tokens = coarsest * self.tokens_per_frame
        if window_tokens > self.max_window_positions:
            fail(
                f"a {coarsest}-frame window holds {window_tokens} tokens but the position table has "
                f"only max_window_positions={self.max_window_positions} rows."
            )
        if self.connector_hidden_size % self.connector_num_attention_heads:
            fail(
                f"connector_hidden_size ({self.connector_hidden_size}) must be divisible by "
                f"connector_num_attention_heads ({self.connector_num_attention_heads})."
            )
        if self.causal_attention != "none" and self.joint_feature_size % self.connector_num_attention_heads:
            fail(
                f"the joint feature width ({self.joint_feature_size}) must be divisible by connector_num_attention_heads "
                f"({self.connector_num_attention_heads}) for the frame-level causal attention."
            )
        if self.uses_instruction_qformer and self.qformer_config.encoder_hidden_size != self.vision_config.hidden_size:
            fail(
                f"qformer_config.encoder_hidden_size ({self.qformer_config.encoder_hidden_size}) must equal the ViT width "
                f"vision_config.hidden_size ({self.vision_config.hidden_size})."
            )
        whisper_seconds = self.speech_config.max_source_positions * 2 * 0.01  # two 10 ms mel frames per position
        if abs(whisper_seconds - self.audio_chunk_seconds) > 1e-9:
            fail(
                f"audio_chunk_seconds ({self.audio_chunk_seconds}) must equal the Whisper encoder's input length "
                f"(speech_config.max_source_positions={self.speech_config.max_source_positions} -> {whisper_seconds:g} s)."
            )
        if self.audio_config is not None and self.audio_config.num_mel_bins % self.audio_config.input_patch_size:
            fail("audio_config.num_mel_bins must be a multiple of audio_config.input_patch_size.")
        if self.text_config.hidden_size < 1:
            fail("text_config.hidden_size must be positive.")
        if self.audio_visual_token_id is not None and not 0 <= self.audio_visual_token_id < self.text_config.vocab_size:
            fail(
                f"audio_visual_token_id ({self.audio_visual_token_id}) must be an id of the LLM vocabulary "
                f"(0..{self.text_config.vocab_size - 1}); add the token to the tokenizer and resize the embeddings."
            )
        if self.max_audio_chunks is not None and self.max_audio_chunks < 1:
            fail(f"max_audio_chunks must be >= 1 or None, got {self.max_audio_chunks}.")
        frames_per_chunk = self.audio_chunk_seconds / self.frame_seconds
        if abs(frames_per_chunk - round(frames_per_chunk)) > 1e-9:
            fail("audio_chunk_seconds must be a whole number of frames.")


__all__ = ["FavorConfig"]

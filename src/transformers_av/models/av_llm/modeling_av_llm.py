"""The Audio-Visual LLM (Shu et al., 2023) as transformers models: `AvLlmModel` (CLIP frames + CLAP segments, three
linear projectors, the LLM body) and `AvLlmForConditionalGeneration` (+ LM head, loss, generate).

The encoders and the connector are parts of their own (`clap_segments.py`, `linear_connector.py`, the CLIP frame
encoder of `models/common/clip_frames.py`), and what every audio-visual LLM does the same way (frozen encoders,
placeholder scatter, generation) lives in `models/common/modeling_common.py`. This file only wires them and decides,
per sample, which modalities run.
"""

import contextlib

import torch
from torch import nn
from transformers import AutoModel, GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, auto_docstring, can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_av_llm import AvLlmConfig
from ..common.modeling_common import (
    FrozenEncodersMixin,
    SelfContainedSaveMixin,
    drop_media_after_prefill,
    embed_tokens_without_placeholder,
    mask_placeholder_logits,
    positions_after_left_padding,
    runs_absent_encoders,
    scatter_media_embeds,
    token_mask,
)
from .clap_segments import ClapSegmentEncoder
from ..common.clip_frames import ClipFrameEncoder, ClipFrameOutput
from .components_av_llm import assemble_av_llm_from_components
from .linear_connector import LinearAudioVisualConnector
from .outputs_av_llm import AvLlmCausalLMOutputWithPast, AvLlmMediaOutput, AvLlmModelOutputWithPast

# media inputs consumed at prefill only; generate() must not feed them again at the decoding steps
MEDIA_INPUT_NAMES = ("pixel_values_videos", "video_frame_mask", "audio_input_features", "audio_segment_mask",
                     "audio_is_longer")

# the media inputs of `AvLlmModel` / `AvLlmForConditionalGeneration` (`AvLlmProcessor` builds them), for auto_docstring
MEDIA_ARGS_DOCSTRING = r"""
    pixel_values_videos (`torch.FloatTensor` of shape `(batch_size, num_frames, num_channels, image_size, image_size)`, *optional*):
        CLIP-normalised video frames, as [`AvLlmProcessor`] makes them (an image is a one-frame video).
    video_frame_mask (`torch.Tensor` of shape `(batch_size, num_frames)`, *optional*):
        1 for real frames, 0 for padding frames (which are not encoded). Defaults to all frames.
    audio_input_features (`torch.FloatTensor` of shape `(batch_size, num_segments, num_channels, time, num_mel_bins)`, *optional*):
        CLAP log-mel features of each audio segment (4 channels for a fused CLAP tower, else 1).
    audio_segment_mask (`torch.Tensor` of shape `(batch_size, num_segments)`, *optional*):
        1 for real audio segments, 0 for padding. Defaults to all segments.
    audio_is_longer (`torch.Tensor` of shape `(batch_size, num_segments)`, *optional*):
        For fused CLAP towers: whether each segment was longer than the tower's input (its `is_longer` flag).
"""
LABELS_DOCSTRING = r"""
    labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
        Labels for the language modeling loss: -100 everywhere but the answer tokens (or pass the targets already
        shifted as `shift_labels`). The loss is the causal-LM cross-entropy (honouring `num_items_in_batch` for
        gradient accumulation).
"""


@contextlib.contextmanager
def _eval_mode(module: nn.Module):
    """Run `module` in eval mode (no dropout, batch norms read but do not update their running statistics), then
    restore the mode of each of its submodules."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@auto_docstring
class AvLlmPreTrainedModel(SelfContainedSaveMixin, PreTrainedModel):
    config_class = AvLlmConfig
    config: AvLlmConfig
    base_model_prefix = "model"
    input_modalities = ("video", "audio", "image", "text")
    supports_gradient_checkpointing = True
    # the HTSAT stages (`ClapAudioModel` names none); the other towers' layers are gathered from them (`post_init`)
    _no_split_modules = ["ClapAudioStage"]
    _skip_keys_device_placement = ["cache"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _can_compile_fullgraph = False

    def post_init(self):
        super().post_init()
        # transformers gathers `_no_split_modules` from the direct children only; the towers sit in plain-module parts
        for module in self.modules():
            if module is not self and isinstance(module, PreTrainedModel):
                self._no_split_modules.update(module._no_split_modules or ())


@auto_docstring(
    custom_intro="""
    The Audio-Visual LLM without a language modeling head: the CLIP frame encoder, the CLAP segment encoder, the
    linear projectors and the LLM body.
    """
)
class AvLlmModel(FrozenEncodersMixin, AvLlmPreTrainedModel):

    def __init__(self, config: AvLlmConfig):
        super().__init__(config)
        self.vision_encoder = ClipFrameEncoder(
            config.vision_config,
            feature_layer=config.vision_feature_layer,
            apply_post_layernorm=config.vision_post_layernorm,
        )
        self.audio_encoder = ClapSegmentEncoder(config.audio_config, num_segments=config.num_audio_segments)
        self.connector = LinearAudioVisualConnector(
            vision_hidden_size=config.vision_config.hidden_size,
            audio_hidden_size=config.audio_token_size,
            text_hidden_size=config.text_config.hidden_size,
            bias=config.projector_bias,
        )
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def encoder_modules(self) -> dict[str, nn.Module]:
        """The pretrained encoders (frozen in both training stages of the paper)."""
        return {"vision_encoder": self.vision_encoder, "audio_encoder": self.audio_encoder}

    # -- which modalities a sample asks for ----------------------------------------------------------------------------
    def sample_modalities(
        self, input_ids: torch.LongTensor | None = None, inputs_embeds: torch.FloatTensor | None = None
    ) -> tuple[torch.BoolTensor, torch.BoolTensor]:
        """(B, L) prompt ids (or given embeddings, where the modality tokens are found by value) -> `(uses_visual,
        uses_audio)`, each (B,): `<VIS>` selects the frames, `<AUD>` the audio, `<AUD_VIS>` both. A prompt without any
        modality token uses all the media it was given."""
        ids, embedding = self.config.modality_token_ids, self.get_input_embeddings()

        def holds(*names):
            found = None
            for name in names:
                mask = token_mask(ids[name], input_ids, inputs_embeds, embedding, f"The modality token of {name!r}")
                found = mask if found is None else found | mask
            return found.any(dim=1)

        visual, audio = holds("visual", "audio_visual"), holds("audio", "audio_visual")
        unmarked = ~(visual | audio)
        return visual | unmarked, audio | unmarked

    # -- encoders ------------------------------------------------------------------------------------------------------
    def get_visual_features(
        self, pixel_values_videos: torch.FloatTensor, video_frame_mask: torch.Tensor | None = None, **kwargs
    ) -> ClipFrameOutput:
        """(B, T, 3, H, W) frames -> [`ClipFrameOutput`]: the temporal tokens (B, T, Dv), one [CLS] token per frame
        (zeros at padding frames, which `video_frame_mask` (B, T) marks and which are not encoded), and the spatial
        tokens (B, P, Dv), each patch averaged over the sample's frames; the tower's own outputs (`tower_outputs`, with
        every layer's when `output_hidden_states` / `output_attentions` ask for them)."""
        with self._grad_context(self.vision_encoder):
            return self.vision_encoder(pixel_values_videos, video_frame_mask, **kwargs)

    def get_audio_event_features(
        self,
        audio_input_features: torch.FloatTensor,
        audio_segment_mask: torch.Tensor | None = None,
        audio_is_longer: torch.Tensor | None = None,
    ) -> torch.FloatTensor:
        """(B, K, C, time, mel) CLAP features of K segments -> (B, K, Da): each real segment (`audio_segment_mask`
        (B, K)) through the HTSAT tower, its last hidden state flattened into one token (zeros at padding segments).
        `audio_is_longer` (B, K) is the `is_longer` flag of fused towers."""
        with self._grad_context(self.audio_encoder):
            return self.audio_encoder(audio_input_features, audio_segment_mask, audio_is_longer)

    # -- media -> LLM-width tokens ---------------------------------------------------------------------------------------
    def get_media_features(
        self,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_frame_mask: torch.Tensor | None = None,
        audio_input_features: torch.FloatTensor | None = None,
        audio_segment_mask: torch.Tensor | None = None,
        audio_is_longer: torch.Tensor | None = None,
        uses_visual: torch.Tensor | None = None,
        uses_audio: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
    ) -> AvLlmMediaOutput | None:
        """Encode the modalities each sample uses and project them to the LLM width.

        Frames: `pixel_values_videos` (B, T, 3, H, W) with `video_frame_mask` (B, T). Audio: `audio_input_features`
        (B, K, C, time, mel) CLAP features per segment with `audio_segment_mask` (B, K) and, for fused towers,
        `audio_is_longer` (B, K). `uses_visual` / `uses_audio` (B,) switch a modality off per sample (default: on);
        an encoder none of whose inputs is used does not run at all. Returns `None` when nothing is used.
        `output_attentions` / `output_hidden_states` return the CLIP tower's per-layer outputs in `image_outputs`.
        Given `input_ids` (e.g. a processor's whole output, `model.get_media_features(**processor(...))`), the modality
        tokens of the prompts choose the media as in `forward` (unless `uses_visual` / `uses_audio` are given);
        `attention_mask` and `labels` are accepted for the same reason and not used.
        """
        reference = pixel_values_videos if pixel_values_videos is not None else audio_input_features
        if reference is None:
            return None
        batch_size, device = reference.shape[0], reference.device
        if input_ids is not None and uses_visual is None and uses_audio is None:
            uses_visual, uses_audio = self.sample_modalities(input_ids)
        every = torch.ones(batch_size, dtype=torch.bool, device=device)
        uses_visual = every if uses_visual is None else uses_visual.to(device=device, dtype=torch.bool)
        uses_audio = every if uses_audio is None else uses_audio.to(device=device, dtype=torch.bool)

        temporal = spatial = frame_mask = image_outputs = None
        if pixel_values_videos is not None:
            frame_mask = video_frame_mask
            if frame_mask is None:
                frame_mask = torch.ones(pixel_values_videos.shape[:2], dtype=torch.bool, device=device)
            frame_mask = frame_mask.to(device=device, dtype=torch.bool) & uses_visual[:, None]  # (B, T)
            if bool(frame_mask.any()):
                flags = {"output_attentions": output_attentions, "output_hidden_states": output_hidden_states}
                frames = self.get_visual_features(pixel_values_videos, frame_mask, **{k: v for k, v in flags.items() if v})
                temporal, spatial = frames.temporal_tokens, frames.spatial_tokens  # (B, T, Dv), (B, P, Dv)
                tower = frames.tower_outputs
                image_outputs = BaseModelOutputWithPooling(
                    last_hidden_state=tower.last_hidden_state,
                    pooler_output=temporal,
                    hidden_states=tower.hidden_states,
                    attentions=tower.attentions,
                )

        audio = segment_mask = None
        if audio_input_features is not None:
            segment_mask = audio_segment_mask
            if segment_mask is None:
                segment_mask = torch.ones(audio_input_features.shape[:2], dtype=torch.bool, device=device)
            segment_mask = segment_mask.to(device=device, dtype=torch.bool) & uses_audio[:, None]  # (B, K)
            if bool(segment_mask.any()):
                audio = self.get_audio_event_features(audio_input_features, segment_mask, audio_is_longer)  # (B, K, Da)

        if temporal is None and audio is None:
            return None
        embeds, token_counts = self.connector(
            temporal_tokens=temporal,
            frame_mask=frame_mask if temporal is not None else None,
            spatial_tokens=spatial,
            audio_tokens=audio,
            segment_mask=segment_mask if audio is not None else None,
        )  # (B, C_max, D), (B,)
        return AvLlmMediaOutput(
            embeds=embeds,
            token_counts=token_counts,
            temporal_tokens=temporal,
            spatial_tokens=spatial,
            audio_tokens=audio,
            uses_visual=None if frame_mask is None else frame_mask.any(dim=1),
            uses_audio=None if segment_mask is None else segment_mask.any(dim=1),
            image_outputs=image_outputs,
            audio_outputs=None if audio is None else BaseModelOutputWithPooling(pooler_output=audio),
        )

    def get_media_embeds(self, *args, **kwargs) -> AvLlmMediaOutput | None:
        """Alias of [`~AvLlmModel.get_media_features`] (its name in release 0.1)."""
        return self.get_media_features(*args, **kwargs)

    def embed_prompt(
        self,
        input_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        *,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        **media,
    ) -> tuple[torch.FloatTensor, AvLlmMediaOutput | None]:
        """Token embeddings of the prompt (`input_ids`, or given `inputs_embeds` in which the placeholder and modality
        tokens are found by value) with the media tokens at the placeholder positions. Without media, placeholder and
        modality tokens are ordinary text tokens. Returns `(inputs_embeds, media_output_or_None)`."""
        media_token_id, embedding = self.config.media_token_id, self.get_input_embeddings()
        if inputs_embeds is None:
            inputs_embeds = embed_tokens_without_placeholder(embedding, input_ids, media_token_id)
        output = None
        if media.get("pixel_values_videos") is not None or media.get("audio_input_features") is not None:
            if media_token_id is None:
                raise ValueError("config.media_token_id is not set: the model cannot find where the media go.")
            uses_visual, uses_audio = self.sample_modalities(input_ids, inputs_embeds)
            output = self.get_media_features(
                **media, uses_visual=uses_visual, uses_audio=uses_audio,
                output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            )
            placeholder = token_mask(media_token_id, input_ids, inputs_embeds, embedding, "The media placeholder")
            if output is not None:
                inputs_embeds = scatter_media_embeds(
                    placeholder, inputs_embeds, output.embeds, output.token_counts, "AvLlmProcessor"
                )
            elif bool(placeholder.any()):
                rows = placeholder.any(dim=1).nonzero()[:, 0].tolist()
                raise ValueError(
                    f"Samples {rows} hold media placeholder tokens but none of the media their modality tokens name "
                    "were given (pixel_values_videos for <VIS>, audio_input_features for <AUD>, both for <AUD_VIS>). "
                    "Build the inputs with AvLlmProcessor."
                )
        if runs_absent_encoders(self.config.run_absent_encoders, self.training):
            anchor = self._absent_modules_anchor(output)
            if anchor is not None:
                inputs_embeds = inputs_embeds + anchor.to(inputs_embeds.dtype)
        return inputs_embeds, output

    def _absent_modules_anchor(self, output: AvLlmMediaOutput | None) -> torch.Tensor | None:
        """0 x (the encoders and projectors this batch did not run, on a zero dummy input): every value stays the same,
        but each rank of a distributed job runs -- and gives (zero) gradients to -- the same modules."""
        weight = self.connector.temporal_projection.weight
        terms = []
        if output is None or output.temporal_tokens is None:
            size = self.config.vision_config.image_size
            with _eval_mode(self.vision_encoder):
                frames = self.vision_encoder(weight.new_zeros(1, 1, self.config.vision_config.num_channels, size, size))
            terms.append(self.connector.temporal_projection(frames.temporal_tokens).sum())
            terms.append(self.connector.spatial_projection(frames.spatial_tokens).sum())
        if output is None or output.audio_tokens is None:
            audio_config = self.config.audio_config
            channels = 4 if audio_config.enable_fusion else 1
            features = weight.new_zeros(1, 1, channels, audio_config.spec_size, audio_config.num_mel_bins)
            with _eval_mode(self.audio_encoder):  # the dummy must not move the tower's batch-norm running statistics
                terms.append(self.connector.audio_projection(self.audio_encoder(features)).sum())
        return torch.stack(terms).sum() * 0.0 if terms else None

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @auto_docstring(custom_args=MEDIA_ARGS_DOCSTRING)
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_frame_mask: torch.Tensor | None = None,
        audio_input_features: torch.FloatTensor | None = None,
        audio_segment_mask: torch.Tensor | None = None,
        audio_is_longer: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | AvLlmModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        media = {
            "pixel_values_videos": pixel_values_videos,
            "video_frame_mask": video_frame_mask,
            "audio_input_features": audio_input_features,
            "audio_segment_mask": audio_segment_mask,
            "audio_is_longer": audio_is_longer,
        }
        inputs_embeds, output = self.embed_prompt(
            input_ids,
            inputs_embeds,
            output_attentions=bool(kwargs.get("output_attentions", self.config.output_attentions)),
            output_hidden_states=bool(kwargs.get("output_hidden_states", self.config.output_hidden_states)),
            **media,
        )

        if position_ids is None and attention_mask is not None and attention_mask.dim() == 2:
            position_ids = positions_after_left_padding(attention_mask, inputs_embeds.shape[1])
        outputs = self.language_model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        return AvLlmModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=None if output is None else output.image_outputs,
            audio_outputs=None if output is None else output.audio_outputs,
            media_embeds=None if output is None else output.embeds,
        )


@auto_docstring(
    custom_intro="""
    The Audio-Visual LLM: [`AvLlmModel`] with a language modeling head. The modality tokens `<VIS>`, `<AUD>` and
    `<AUD_VIS>` of a prompt choose which of its media a sample uses.
    """
)
class AvLlmForConditionalGeneration(AvLlmPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}  # as the LLM's own head (its embedding is sharded too)

    def __init__(self, config: AvLlmConfig):
        super().__init__(config)
        self.model = AvLlmModel(config)
        self.lm_head = nn.Linear(config.text_config.hidden_size, config.text_config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.model.set_input_embeddings(value)

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, value):
        self.lm_head = value

    def freeze_encoders(self, freeze: bool = True):
        self.model.freeze_encoders(freeze)

    def get_media_features(self, *args, **kwargs) -> AvLlmMediaOutput | None:
        """[`AvLlmModel.get_media_features`] of the inner model."""
        return self.model.get_media_features(*args, **kwargs)

    def get_media_embeds(self, *args, **kwargs) -> AvLlmMediaOutput | None:
        """Alias of [`~AvLlmForConditionalGeneration.get_media_features`] (its name in release 0.1)."""
        return self.model.get_media_features(*args, **kwargs)

    def get_inputs_embeds(self, input_ids: torch.LongTensor, **media) -> torch.FloatTensor:
        """The LLM input embeddings of a prompt with its media merged in (e.g. for `generate(inputs_embeds=...)`)."""
        return self.model.embed_prompt(input_ids, **media)[0]

    @classmethod
    def from_pretrained_components(cls, *, llm, vision_encoder, audio_encoder, **settings):
        """Assemble a model ready to train from separately pretrained parts (local paths or Hub ids of a causal LM, a
        CLIP model and a CLAP model): see [`~components_av_llm.assemble_av_llm_from_components`] for the arguments.
        `transformers_av.assembly.av_llm_processor_from_components` builds the matching processor."""
        return assemble_av_llm_from_components(
            cls, llm=llm, vision_encoder=vision_encoder, audio_encoder=audio_encoder, **settings
        )

    @can_return_tuple
    @deprecate_kwarg("past_key_values", "5.40.0", new_name="cache")
    @auto_docstring(custom_args=MEDIA_ARGS_DOCSTRING + LABELS_DOCSTRING)
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Cache | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_frame_mask: torch.Tensor | None = None,
        audio_input_features: torch.FloatTensor | None = None,
        audio_segment_mask: torch.Tensor | None = None,
        audio_is_longer: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | AvLlmCausalLMOutputWithPast:
        num_items_in_batch = kwargs.pop("num_items_in_batch", None)
        shift_labels = kwargs.pop("shift_labels", None)  # targets already aligned (sequence / context parallelism)
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            pixel_values_videos=pixel_values_videos,
            video_frame_mask=video_frame_mask,
            audio_input_features=audio_input_features,
            audio_segment_mask=audio_segment_mask,
            audio_is_longer=audio_is_longer,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        slice_indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(outputs.last_hidden_state[:, slice_indices, :])
        logits = mask_placeholder_logits(logits, self.config.media_token_id)
        loss = None
        if labels is not None or shift_labels is not None:
            loss = self.loss_function(
                logits, labels, vocab_size=self.config.text_config.vocab_size, num_items_in_batch=num_items_in_batch,
                shift_labels=shift_labels,
            )
        return AvLlmCausalLMOutputWithPast(
            loss=loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=outputs.image_outputs,
            audio_outputs=outputs.audio_outputs,
            media_embeds=outputs.media_embeds,
        )

    def prepare_inputs_for_generation(self, input_ids, inputs_embeds=None, is_first_iteration=False, **kwargs):
        model_inputs = super().prepare_inputs_for_generation(
            input_ids, inputs_embeds=inputs_embeds, is_first_iteration=is_first_iteration, **kwargs
        )
        return drop_media_after_prefill(
            model_inputs, MEDIA_INPUT_NAMES, is_first_iteration, kwargs.get("use_cache", True)
        )


__all__ = [
    "AvLlmCausalLMOutputWithPast",
    "AvLlmForConditionalGeneration",
    "AvLlmMediaOutput",
    "AvLlmModel",
    "AvLlmModelOutputWithPast",
    "AvLlmPreTrainedModel",
]

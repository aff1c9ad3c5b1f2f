"""FAVOR / video-SALMONN as transformers models: `FavorModel` (encoders + connector + LLM body) and
`FavorForConditionalGeneration` (+ LM head, loss, generate)."""

import torch
from torch import nn
from transformers import initialization as init
from transformers import AutoModel, GenerationMixin, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from transformers.processing_utils import Unpack
from transformers.utils import TransformersKwargs, auto_docstring, can_return_tuple
from transformers.utils.deprecation import deprecate_kwarg

from .configuration_favor import FavorConfig
from ..beats.modeling_beats import BeatsModel
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
from .components_favor import assemble_from_components
from .connector import FavorConnector
from .outputs_favor import FavorAudioVisualOutput, FavorCausalLMOutputWithPast, FavorModelOutputWithPast
from .sync import sync_audio_to_frames
from .visual_encoders import build_visual_encoder
from .windows import audio_frame_count, image_frame_count

WHISPER_HOP_LENGTH = 160  # mel frames are 10 ms apart
WHISPER_FRAMES_PER_SECOND = 50  # encoder output rate

# media inputs consumed at prefill only; generate() must not feed them again at the decoding steps
MEDIA_INPUT_NAMES = (
    "pixel_values_videos", "video_frame_mask", "video_is_image", "qformer_input_ids", "qformer_attention_mask",
    "input_features", "input_features_mask", "audio_input_features", "audio_input_features_mask", "modality_mask",
)

# the media inputs of `FavorModel` / `FavorForConditionalGeneration` (`FavorProcessor` builds them), for auto_docstring
MEDIA_ARGS_DOCSTRING = r"""
    pixel_values_videos (`torch.FloatTensor` of shape `(batch_size, num_frames, num_channels, image_size, image_size)`, *optional*):
        Video frames, two per second, as [`FavorProcessor`] makes them. A sample flagged in `video_is_image` holds one
        image in frame 0.
    video_frame_mask (`torch.Tensor` of shape `(batch_size, num_frames)`, *optional*):
        1 for real frames, 0 for padding frames (which are not encoded). Defaults to all frames.
    video_is_image (`torch.Tensor` of shape `(batch_size,)`, *optional*):
        Whether the visual input of a sample is one image, shown over the whole length of its audio.
    qformer_input_ids (`torch.LongTensor` of shape `(batch_size, qformer_sequence_length)`, *optional*):
        The instruction, tokenised for the visual Q-Former (InstructBLIP reads it while it encodes each frame).
    qformer_attention_mask (`torch.Tensor` of shape `(batch_size, qformer_sequence_length)`, *optional*):
        1 for the tokens of `qformer_input_ids`, 0 for padding.
    input_features (`torch.FloatTensor` of shape `(batch_size, num_mel_bins, 3000 * num_chunks)`, *optional*):
        Whisper log-mel features of the audio, in whole 30-second chunks.
    input_features_mask (`torch.Tensor` of shape `(batch_size, 3000 * num_chunks)`, *optional*):
        1 for the mel frames of real audio, 0 for padding: it sets how many audio frames each sample has.
    audio_input_features (`torch.FloatTensor` of shape `(batch_size, num_fbank_frames, num_fbank_bins)`, *optional*):
        BEATs Kaldi filter banks of the same audio (video-SALMONN only).
    audio_input_features_mask (`torch.Tensor` of shape `(batch_size, num_fbank_frames)`, *optional*):
        1 for real filter-bank frames, 0 for padding.
    modality_mask (`torch.Tensor` of shape `(batch_size, 2)`, *optional*):
        `[video, audio]` per sample: 0 turns that modality of the sample into zeros (after the projections).
"""
LABELS_DOCSTRING = r"""
    labels (`torch.LongTensor` of shape `(batch_size, sequence_length)`, *optional*):
        Labels for the language modeling loss: -100 everywhere but the answer tokens (or pass the targets already
        shifted as `shift_labels`). The loss is the causal-LM cross-entropy (honouring `num_items_in_batch` for
        gradient accumulation) plus `config.diversity_loss_weight` times the diversity loss of the connector queries
        (given `num_items_in_batch`, scaled by this batch's share of the answer tokens, so that accumulated
        micro-batches apply the weight once).
"""


def join_frame_outputs(parts: list) -> BaseModelOutputWithPooling:
    """One `BaseModelOutputWithPooling` of the visual encoder from the outputs of consecutive batches of frames
    (each a `BaseModelOutputWithPooling`, or the token tensor alone): every field concatenated along the frames."""
    parts = [BaseModelOutputWithPooling(pooler_output=p) if isinstance(p, torch.Tensor) else p for p in parts]
    if len(parts) == 1:
        return parts[0]

    def join(values):
        if values[0] is None:
            return None
        if isinstance(values[0], tuple):  # per-layer hidden states / attentions
            return tuple(torch.cat(layer) for layer in zip(*values))
        return torch.cat(values)

    return BaseModelOutputWithPooling(
        **{name: join([getattr(p, name) for p in parts])
           for name in ("last_hidden_state", "pooler_output", "hidden_states", "attentions")}
    )


@auto_docstring
class FavorPreTrainedModel(SelfContainedSaveMixin, PreTrainedModel):
    config_class = FavorConfig
    config: FavorConfig
    base_model_prefix = "model"
    input_modalities = ("video", "audio", "image", "text")
    supports_gradient_checkpointing = True
    # the connector's layers; the towers' layers are gathered from the towers (see `post_init`)
    _no_split_modules = ["CausalQFormerLayer"]
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

    def _init_weights(self, module):
        super()._init_weights(module)
        std = self.config.initializer_range
        if isinstance(module, nn.ParameterList):  # the connector's per-resolution query tokens
            for tokens in module:
                init.normal_(tokens, mean=0.0, std=std)
        elif isinstance(module, FavorModel):
            module.visual_encoder.init_weights(std)


@auto_docstring(
    custom_intro="""
    FAVOR / video-SALMONN without a language modeling head: the encoders (a visual encoder part -- InstructBLIP ViT +
    Q-Former by default --, the Whisper encoder, BEATs for video-SALMONN), the causal multi-resolution Q-Former
    connector and the LLM body.
    """
)
class FavorModel(FrozenEncodersMixin, FavorPreTrainedModel):
    # frames go through the visual encoder in batches of at most this many: a 30-minute video at 2 fps is 3,600 frames,
    # whose ViT activations would otherwise be held all at once (frames are encoded independently, so the values are
    # those of one batch up to float rounding; clips up to 2 minutes are one batch, as in the official inference)
    frames_per_visual_batch: int = 256

    def __init__(self, config: FavorConfig):
        super().__init__(config)
        self.visual_encoder = build_visual_encoder(config)
        self.speech_encoder = WhisperEncoder(config.speech_config)
        self.audio_encoder = BeatsModel(config.audio_config) if config.audio_config is not None else None
        self.connector = FavorConnector(config)
        self.language_model = AutoModel.from_config(config.text_config)
        self.post_init()

    def get_input_embeddings(self):
        return self.language_model.get_input_embeddings()

    def set_input_embeddings(self, value):
        self.language_model.set_input_embeddings(value)

    def encoder_modules(self) -> dict[str, nn.Module]:
        """The pretrained encoders (frozen in the papers' training recipes)."""
        modules = {"visual_encoder": self.visual_encoder, "speech_encoder": self.speech_encoder}
        if self.audio_encoder is not None:
            modules["audio_encoder"] = self.audio_encoder
        return modules

    # -- encoders ------------------------------------------------------------------------------------------------------
    def encode_frames(
        self,
        pixel_values_videos: torch.FloatTensor,
        video_frame_mask: torch.Tensor | None = None,
        qformer_input_ids: torch.LongTensor | None = None,
        qformer_attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        """The visual encoder part on the real frames of a batch: `pooler_output` (B, T_v, num_query_tokens, Dv) holds
        the instruction-aware visual tokens of every frame (zeros at padding frames, which are not encoded);
        `last_hidden_state`, `hidden_states` and `attentions` are the vision tower's on the n real frames (batch-major;
        the last two when `output_hidden_states` / `output_attentions` ask for them). `qformer_input_ids` (B, L) is
        each sample's instruction, for parts that read one (InstructBLIP's Q-Former)."""
        batch_size, num_frames = pixel_values_videos.shape[:2]
        if video_frame_mask is None:
            video_frame_mask = torch.ones(batch_size, num_frames, dtype=torch.bool, device=pixel_values_videos.device)
        video_frame_mask = video_frame_mask.bool()
        if not bool(video_frame_mask.any()):  # nothing to encode (the ViT cannot take 0 images)
            return BaseModelOutputWithPooling(
                pooler_output=pixel_values_videos.new_zeros(
                    batch_size, num_frames, self.config.num_query_tokens, self.config.visual_feature_size
                )
            )
        every_frame = bool(video_frame_mask.all())
        # (n, 3, H, W) real frames only; a view when there is no padding frame (a long video is not copied)
        frames = pixel_values_videos.flatten(0, 1) if every_frame else pixel_values_videos[video_frame_mask]
        sample_of_frame = torch.arange(batch_size, device=frames.device).repeat_interleave(video_frame_mask.sum(1))
        input_ids = attention_mask = None
        if qformer_input_ids is not None:  # each frame reads its sample's instruction
            input_ids = qformer_input_ids[sample_of_frame]
            if qformer_attention_mask is not None:
                attention_mask = qformer_attention_mask[sample_of_frame]
        tower_flags = {k: v for k, v in kwargs.items() if k in ("output_hidden_states", "output_attentions") and v}
        step = self.frames_per_visual_batch
        with self._grad_context(self.visual_encoder):
            outputs = join_frame_outputs([
                self.visual_encoder(
                    frames[start : start + step],
                    None if input_ids is None else input_ids[start : start + step],
                    None if attention_mask is None else attention_mask[start : start + step],
                    **tower_flags,
                )
                for start in range(0, frames.shape[0], step)
            ])
        tokens = outputs.pooler_output  # (n, N, Dv)
        if every_frame:
            visual = tokens.view(batch_size, num_frames, *tokens.shape[1:])
        else:
            visual = tokens.new_zeros(batch_size, num_frames, *tokens.shape[1:])
            visual[video_frame_mask] = tokens
        outputs.pooler_output = visual  # (B, T_v, N, Dv)
        return outputs

    def get_visual_features(
        self,
        pixel_values_videos: torch.FloatTensor,
        video_frame_mask: torch.Tensor | None = None,
        qformer_input_ids: torch.LongTensor | None = None,
        qformer_attention_mask: torch.Tensor | None = None,
    ) -> torch.FloatTensor:
        """(B, T_v, 3, H, W) frames -> (B, T_v, num_query_tokens, Dv) instruction-aware visual tokens (zeros for
        padding frames, which are not encoded): the `pooler_output` of [`~FavorModel.encode_frames`]."""
        return self.encode_frames(pixel_values_videos, video_frame_mask, qformer_input_ids, qformer_attention_mask).pooler_output

    def get_visual_tokens(self, *args, **kwargs) -> torch.FloatTensor:
        """Alias of [`~FavorModel.get_visual_features`] (its name in release 0.1)."""
        return self.get_visual_features(*args, **kwargs)

    def get_speech_features(self, input_features: torch.FloatTensor) -> torch.FloatTensor:
        """(B, mel_bins, 3000 * K) log-mel -> (B, 1500 * K, d_model): each 30 s chunk through the Whisper encoder."""
        chunk = self.speech_encoder.config.max_source_positions * 2
        if input_features.shape[-1] % chunk:
            raise ValueError(
                f"input_features must hold whole {chunk}-frame (30 s) chunks, got {input_features.shape[-1]} mel frames; "
                "pad with the Whisper feature extractor (padding='max_length') or use FavorProcessor."
            )
        batch_size, bins, length = input_features.shape
        chunks = input_features.reshape(batch_size, bins, length // chunk, chunk).permute(0, 2, 1, 3).flatten(0, 1)
        with self._grad_context(self.speech_encoder):
            hidden = self.speech_encoder(chunks.to(self.speech_encoder.dtype)).last_hidden_state
        return hidden.reshape(batch_size, -1, hidden.shape[-1])

    def get_audio_event_features(self, audio_input_features, audio_input_features_mask=None) -> torch.FloatTensor:
        """(B, F, 128) BEATs fbank -> (B, N, 768). Samples of different lengths are encoded one by one: BEATs' own
        padding mask is coarser than its patches, so batching padded fbanks would change the shorter samples."""
        features = audio_input_features.to(self.audio_encoder.dtype)
        with self._grad_context(self.audio_encoder):
            if audio_input_features_mask is None or bool(audio_input_features_mask.all()):
                return self.audio_encoder(input_features=features).last_hidden_state
            outputs = []
            for i, length in enumerate(audio_input_features_mask.long().sum(-1).tolist()):
                if length < self.audio_encoder.config.input_patch_size:  # no audio (or < 160 ms): no event tokens
                    outputs.append(features.new_zeros(0, self.audio_encoder.config.encoder_embed_dim))
                else:
                    outputs.append(self.audio_encoder(input_features=features[i : i + 1, :length]).last_hidden_state[0])
        return nn.utils.rnn.pad_sequence(outputs, batch_first=True)

    # -- the audio-visual path -----------------------------------------------------------------------------------------
    def get_media_features(
        self,
        pixel_values_videos: torch.FloatTensor | None = None,
        video_frame_mask: torch.Tensor | None = None,
        video_is_image: torch.Tensor | None = None,
        qformer_input_ids: torch.LongTensor | None = None,
        qformer_attention_mask: torch.Tensor | None = None,
        input_features: torch.FloatTensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        audio_input_features: torch.FloatTensor | None = None,
        audio_input_features_mask: torch.Tensor | None = None,
        modality_mask: torch.Tensor | None = None,
        visual_tokens: torch.FloatTensor | None = None,
        audio_tokens: torch.FloatTensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
    ) -> FavorAudioVisualOutput:
        """Encode the media of a batch and turn them into LLM-width tokens.

        Video frames: `pixel_values_videos` (B, T_v, 3, H, W) with `video_frame_mask` (B, T_v) marking real frames;
        a sample flagged in `video_is_image` holds one image in frame 0, repeated over its audio's length.
        Speech: `input_features` (B, 80, 3000 * K) Whisper log-mel with `input_features_mask` (B, 3000 * K).
        Audio events: `audio_input_features` (B, F, 128) BEATs fbank with `audio_input_features_mask`.
        `modality_mask` (B, 2) [video, audio] zeroes a modality of a sample. Precomputed `visual_tokens`
        (B, T_v, N, Dv) may replace the pixels and projected `audio_tokens` (B, S, Da) the audio features (all their
        frames count as content). `output_attentions` also returns the causal Q-Former's attention maps and the vision
        tower's, `output_hidden_states` the vision tower's hidden states (in `image_outputs`). The text inputs
        (`input_ids`, `attention_mask`, `labels`) are accepted so that a processor's whole output can be passed
        (`model.get_media_features(**processor(...))`), and are not used.
        """
        config = self.config
        candidates = (pixel_values_videos, visual_tokens, input_features, audio_input_features, audio_tokens)
        reference = next((t for t in candidates if t is not None), None)
        if reference is None:
            raise ValueError("get_media_features needs at least one of: video frames, audio features, tokens.")
        batch_size, device = reference.shape[0], reference.device
        dtype = self.connector.layer_norm.weight.dtype
        per_frame = config.audio_frames_per_frame

        # visual tokens per frame (B, T_v, N, Dv)
        image_outputs = audio_outputs = None
        if visual_tokens is None and pixel_values_videos is not None:
            image_outputs = self.encode_frames(
                pixel_values_videos, video_frame_mask, qformer_input_ids, qformer_attention_mask,
                output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            )
            visual_tokens = image_outputs.pooler_output
        if visual_tokens is None:
            visual_tokens = torch.zeros(batch_size, 0, config.num_query_tokens, config.visual_feature_size, device=device, dtype=dtype)
            video_counts = torch.zeros(batch_size, dtype=torch.long, device=device)
        elif video_frame_mask is not None:
            video_counts = video_frame_mask.long().sum(1).to(device)
        else:
            video_counts = torch.full((batch_size,), visual_tokens.shape[1], dtype=torch.long, device=device)

        # audio frames (B, S, Da), projected: [Whisper | BEATs]
        audio_streams = []
        if audio_tokens is not None:
            audio_tokens = audio_tokens.to(dtype)
            audio_counts = torch.full((batch_size,), audio_tokens.shape[1] // per_frame, dtype=torch.long, device=device)
        elif input_features is not None:
            max_mel = None if config.max_audio_chunks is None else config.max_audio_chunks * 3000
            input_features = input_features[..., :max_mel]
            speech_hidden = self.get_speech_features(input_features)  # (B, 1500 * K, d_model)
            speech = self.connector.speech_projection(speech_hidden.to(dtype))
            audio_streams.append(speech)
            if input_features_mask is None:
                mel_counts = torch.full((batch_size,), input_features.shape[-1], device=device)
            else:
                mel_counts = input_features_mask[..., :max_mel].long().sum(-1).to(device)
            audio_counts = torch.tensor(
                [
                    audio_frame_count(
                        int(m) * WHISPER_HOP_LENGTH,
                        frame_seconds=config.frame_seconds,
                        chunk_seconds=config.audio_chunk_seconds,
                        max_chunks=config.max_audio_chunks,
                        mode=config.audio_frame_mode,
                    )
                    for m in mel_counts.tolist()
                ],
                dtype=torch.long,
                device=device,
            )
            if self.audio_encoder is not None:
                rows = speech.shape[1]
                if audio_input_features is not None:
                    events = self.get_audio_event_features(audio_input_features, audio_input_features_mask).to(dtype)
                    # pad BEFORE the projection: pad rows carry the projection bias, as in the official model
                    events = nn.functional.pad(events[:, :rows], (0, 0, 0, max(0, rows - events.shape[1])))
                else:
                    events = speech.new_zeros(batch_size, rows, config.audio_config.encoder_embed_dim)
                audio_streams.append(self.connector.audio_projection(events))
            audio_tokens = torch.cat(audio_streams, dim=-1)
            audio_outputs = BaseModelOutputWithPooling(last_hidden_state=speech_hidden, pooler_output=audio_tokens)
        else:
            audio_width = config.joint_feature_size - config.visual_feature_size
            audio_tokens = torch.zeros(batch_size, 0, audio_width, device=device, dtype=dtype)
            audio_counts = torch.zeros(batch_size, dtype=torch.long, device=device)

        if video_is_image is not None and visual_tokens.shape[1] > 0:
            # an image is shown for the whole audio (at least one frame)
            image_frames = torch.tensor([image_frame_count(int(a)) for a in audio_counts.tolist()], device=device)
            repeat_to = int(image_frames.max())
            is_image = video_is_image.bool().to(device)
            if repeat_to > visual_tokens.shape[1]:
                visual_tokens = nn.functional.pad(visual_tokens, (0, 0, 0, 0, 0, repeat_to - visual_tokens.shape[1]))
            visual_tokens = torch.where(is_image[:, None, None, None], visual_tokens[:, :1].expand_as(visual_tokens), visual_tokens)
            video_counts = torch.where(is_image, image_frames, video_counts)

        joint = sync_audio_to_frames(
            visual_tokens.to(dtype), audio_tokens, video_counts, audio_counts, per_frame, modality_mask,
            interleave=config.audio_visual_sync == "frame",
        )  # (B, T, N, F); N -> 2N without synchronisation
        frame_counts = torch.maximum(video_counts, audio_counts)
        connector_output = self.connector(joint, frame_counts, output_attentions=output_attentions)
        return FavorAudioVisualOutput(
            embeds=connector_output.embeds,
            token_counts=connector_output.token_counts,
            visual_tokens=visual_tokens,
            audio_tokens=audio_tokens,
            joint_tokens=joint,
            resolution_outputs=connector_output.resolution_outputs,
            diversity_loss=connector_output.diversity_loss,
            frame_counts=frame_counts,
            window_attentions=connector_output.window_attentions,
            query_attentions=connector_output.query_attentions,
            cross_attentions=connector_output.cross_attentions,
            image_outputs=image_outputs,
            audio_outputs=audio_outputs,
        )

    def get_audio_visual_features(self, *args, **kwargs) -> FavorAudioVisualOutput:
        """Alias of [`~FavorModel.get_media_features`] (its name in release 0.1)."""
        return self.get_media_features(*args, **kwargs)

    def merge_audio_visual_embeds(self, placeholder, inputs_embeds, audio_visual: FavorAudioVisualOutput):
        """Put each sample's audio-visual tokens at its placeholder positions (`placeholder` (B, L) bool)."""
        return scatter_media_embeds(
            placeholder, inputs_embeds, audio_visual.embeds, audio_visual.token_counts, "FavorProcessor"
        )

    def embed_prompt(
        self,
        input_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        *,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        **media,
    ) -> tuple[torch.FloatTensor, FavorAudioVisualOutput | None]:
        """Token embeddings of the prompt (`input_ids`, or given `inputs_embeds` in which the placeholder rows are
        found by value) with the audio-visual tokens at the placeholder positions, if media are given. Returns
        `(inputs_embeds, audio_visual_output_or_None)`; the output flags reach [`~FavorModel.get_media_features`]."""
        placeholder_id = self.config.audio_visual_token_id
        embedding = self.get_input_embeddings()
        if inputs_embeds is None:
            inputs_embeds = embed_tokens_without_placeholder(embedding, input_ids, placeholder_id)
        audio_visual = None
        if any(media.get(name) is not None for name in ("pixel_values_videos", "input_features", "audio_input_features")):
            if placeholder_id is None:
                raise ValueError("config.audio_visual_token_id is not set: the model cannot find where the media go.")
            placeholder = token_mask(placeholder_id, input_ids, inputs_embeds, embedding, "The audio-visual placeholder")
            audio_visual = self.get_media_features(
                **media, output_attentions=output_attentions, output_hidden_states=output_hidden_states
            )
            inputs_embeds = self.merge_audio_visual_embeds(placeholder, inputs_embeds, audio_visual)
        if self._runs_absent_encoders():
            anchor = self._absent_modules_anchor(media, connector_ran=audio_visual is not None)
            if anchor is not None:
                inputs_embeds = inputs_embeds + anchor.to(inputs_embeds.dtype)
        return inputs_embeds, audio_visual

    # -- keeping distributed ranks in step -----------------------------------------------------------------------------
    def _runs_absent_encoders(self) -> bool:
        return runs_absent_encoders(self.config.run_absent_encoders, self.training)

    def _absent_modules_anchor(self, media: dict, connector_ran: bool) -> torch.Tensor | None:
        """0 x (the outputs of every encoder / projection / the connector that this batch did not use, run on a zero
        dummy input). Added to the prompt embeddings, it leaves every value unchanged but makes each rank of a
        distributed job run -- and give (zero) gradients to -- the same modules, whatever its batch holds."""
        config, dtype = self.config, self.connector.layer_norm.weight.dtype
        device = self.connector.layer_norm.weight.device
        frame_mask = media.get("video_frame_mask")
        terms = []
        if media.get("pixel_values_videos") is None or (frame_mask is not None and not bool(frame_mask.any())):
            size = config.vision_config.image_size
            frame = torch.zeros(1, 1, 3, size, size, device=device, dtype=self.connector.layer_norm.weight.dtype)
            terms.append(self.get_visual_features(frame).sum())
        if media.get("input_features") is None:
            mel = torch.zeros(
                1, config.speech_config.num_mel_bins, config.speech_config.max_source_positions * 2,
                device=device, dtype=self.speech_encoder.dtype,
            )
            terms.append(self.connector.speech_projection(self.get_speech_features(mel).to(dtype)).sum())
        if self.audio_encoder is not None:
            fbank_mask = media.get("audio_input_features_mask")
            patch = self.audio_encoder.config.input_patch_size
            events_ran = (
                media.get("input_features") is not None
                and media.get("audio_input_features") is not None
                and (fbank_mask is None or bool((fbank_mask.long().sum(-1) >= patch).any()))
            )
            if not events_ran:
                fbank = torch.zeros(1, patch, config.audio_config.num_mel_bins, device=device, dtype=self.audio_encoder.dtype)
                terms.append(self.connector.audio_projection(self.get_audio_event_features(fbank).to(dtype)).sum())
        if not connector_ran:
            joint = torch.zeros(1, 1, config.num_query_tokens, config.joint_feature_size, device=device, dtype=dtype)
            terms.append(self.connector(joint, torch.ones(1, dtype=torch.long, device=device)).embeds.sum())
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
        video_is_image: torch.Tensor | None = None,
        qformer_input_ids: torch.LongTensor | None = None,
        qformer_attention_mask: torch.Tensor | None = None,
        input_features: torch.FloatTensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        audio_input_features: torch.FloatTensor | None = None,
        audio_input_features_mask: torch.Tensor | None = None,
        modality_mask: torch.Tensor | None = None,
        use_cache: bool | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | FavorModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        media = {
            "pixel_values_videos": pixel_values_videos,
            "video_frame_mask": video_frame_mask,
            "video_is_image": video_is_image,
            "qformer_input_ids": qformer_input_ids,
            "qformer_attention_mask": qformer_attention_mask,
            "input_features": input_features,
            "input_features_mask": input_features_mask,
            "audio_input_features": audio_input_features,
            "audio_input_features_mask": audio_input_features_mask,
            "modality_mask": modality_mask,
        }
        inputs_embeds, audio_visual = self.embed_prompt(
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
        return FavorModelOutputWithPast(
            last_hidden_state=outputs.last_hidden_state,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=None if audio_visual is None else audio_visual.image_outputs,
            audio_outputs=None if audio_visual is None else audio_visual.audio_outputs,
            audio_visual_embeds=None if audio_visual is None else audio_visual.embeds,
            diversity_loss=None if audio_visual is None else audio_visual.diversity_loss,
        )


@auto_docstring(
    custom_intro="""
    FAVOR / video-SALMONN: [`FavorModel`] with a language modeling head, trained with the causal-LM loss plus the
    connector's diversity loss; answers questions about a video and its sound track.
    """
)
class FavorForConditionalGeneration(FavorPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.language_model.embed_tokens.weight"}
    _tp_plan = {"lm_head": "colwise_gather_output"}  # as the LLM's own head (its embedding is sharded too)

    def __init__(self, config: FavorConfig):
        super().__init__(config)
        self.model = FavorModel(config)
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

    def get_media_features(self, *args, **kwargs) -> FavorAudioVisualOutput:
        """[`FavorModel.get_media_features`] of the inner model."""
        return self.model.get_media_features(*args, **kwargs)

    def get_audio_visual_features(self, *args, **kwargs) -> FavorAudioVisualOutput:
        """Alias of [`~FavorForConditionalGeneration.get_media_features`] (its name in release 0.1)."""
        return self.model.get_media_features(*args, **kwargs)

    def get_inputs_embeds(self, input_ids: torch.LongTensor, **media) -> torch.FloatTensor:
        """The LLM input embeddings of a prompt with its media merged in, e.g. for `generate(inputs_embeds=...)`
        (then logits processors such as the repetition penalty see only the generated tokens, as in the official
        inference code)."""
        return self.model.embed_prompt(input_ids, **media)[0]

    def freeze_encoders(self, freeze: bool = True):
        self.model.freeze_encoders(freeze)

    @classmethod
    def from_pretrained_components(cls, *, llm, speech_encoder, vision_encoder, audio_encoder=None, **settings):
        """Assemble a model ready to train from separately pretrained parts (local paths or Hub ids of a causal LM, a
        Whisper model, an InstructBLIP model and, for video-SALMONN, a BEATs model): see
        [`~components_favor.assemble_from_components`] for the arguments. `transformers_av.assembly.
        processor_from_components` builds the matching processor."""
        return assemble_from_components(
            cls, llm=llm, speech_encoder=speech_encoder, vision_encoder=vision_encoder, audio_encoder=audio_encoder,
            **settings,
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
        video_is_image: torch.Tensor | None = None,
        qformer_input_ids: torch.LongTensor | None = None,
        qformer_attention_mask: torch.Tensor | None = None,
        input_features: torch.FloatTensor | None = None,
        input_features_mask: torch.Tensor | None = None,
        audio_input_features: torch.FloatTensor | None = None,
        audio_input_features_mask: torch.Tensor | None = None,
        modality_mask: torch.Tensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple | FavorCausalLMOutputWithPast:
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
            video_is_image=video_is_image,
            qformer_input_ids=qformer_input_ids,
            qformer_attention_mask=qformer_attention_mask,
            input_features=input_features,
            input_features_mask=input_features_mask,
            audio_input_features=audio_input_features,
            audio_input_features_mask=audio_input_features_mask,
            modality_mask=modality_mask,
            use_cache=use_cache,
            return_dict=True,
            **kwargs,
        )
        hidden_states = outputs.last_hidden_state
        slice_indices = slice(-logits_to_keep, None) if isinstance(logits_to_keep, int) else logits_to_keep
        logits = self.lm_head(hidden_states[:, slice_indices, :])
        logits = mask_placeholder_logits(logits, self.config.audio_visual_token_id)

        loss = lm_loss = None
        if labels is not None or shift_labels is not None:
            lm_loss = self.loss_function(
                logits, labels, vocab_size=self.config.text_config.vocab_size, num_items_in_batch=num_items_in_batch,
                shift_labels=shift_labels,
            )
            loss = lm_loss
            if outputs.diversity_loss is not None and self.config.diversity_loss_weight:
                diversity = outputs.diversity_loss.to(lm_loss.dtype)
                if num_items_in_batch is not None:
                    # Trainer sums the micro-batch losses of a gradient-accumulation step (and of the ranks): weigh
                    # this micro-batch's diversity term by its share of the step's answer tokens, so that the step
                    # applies the weight once, to the token-weighted mean of the micro-batch diversity losses.
                    targets = labels[..., 1:] if shift_labels is None else shift_labels
                    share = targets.ne(-100).sum() / num_items_in_batch
                    diversity = diversity * share.to(device=diversity.device, dtype=diversity.dtype)
                loss = lm_loss + self.config.diversity_loss_weight * diversity
        return FavorCausalLMOutputWithPast(
            loss=loss,
            lm_loss=lm_loss,
            diversity_loss=outputs.diversity_loss,
            logits=logits,
            cache=outputs.cache,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            image_outputs=outputs.image_outputs,
            audio_outputs=outputs.audio_outputs,
            audio_visual_embeds=outputs.audio_visual_embeds,
        )

    def prepare_inputs_for_generation(self, input_ids, inputs_embeds=None, is_first_iteration=False, **kwargs):
        model_inputs = super().prepare_inputs_for_generation(
            input_ids, inputs_embeds=inputs_embeds, is_first_iteration=is_first_iteration, **kwargs
        )
        return drop_media_after_prefill(
            model_inputs, MEDIA_INPUT_NAMES, is_first_iteration, kwargs.get("use_cache", True)
        )


__all__ = [
    "FavorAudioVisualOutput",
    "FavorCausalLMOutputWithPast",
    "FavorForConditionalGeneration",
    "FavorModel",
    "FavorModelOutputWithPast",
    "FavorPreTrainedModel",
]

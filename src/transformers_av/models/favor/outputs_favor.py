"""The outputs of the FAVOR / video-SALMONN models ([`FavorModel`], [`FavorForConditionalGeneration`]) and of their
media path ([`FavorModel.get_media_features`])."""

from dataclasses import dataclass

import torch
from transformers.modeling_outputs import (
    BaseModelOutputWithPooling,
    ModelOutput,
    MultimodalBaseModelOutputWithPast,
    MultimodalCausalLMOutputWithPast,
)
from transformers.utils import auto_docstring
from transformers.utils.auto_docstring import HARDCODED_CONFIG_FOR_MODELS

# auto_docstring names a model's configuration from transformers' own tables, which know no plugin model type (this
# module is the family's first that uses it: the modeling module imports it before its own classes)
HARDCODED_CONFIG_FOR_MODELS.setdefault("favor", "FavorConfig")


@auto_docstring(custom_intro="What [`FavorModel.get_media_features`] computes, stage by stage.")
@dataclass
class FavorAudioVisualOutput(ModelOutput):
    r"""
    embeds (`torch.FloatTensor` of shape `(batch_size, max_num_tokens, hidden_size)`):
        LLM-width audio-visual tokens, left-aligned; only the first `token_counts[i]` rows of sample `i` are real.
    token_counts (`torch.LongTensor` of shape `(batch_size,)`):
        How many audio-visual tokens each sample has (the length of its expanded placeholder).
    visual_tokens (`torch.FloatTensor` of shape `(batch_size, num_frames, num_query_tokens, visual_feature_size)`):
        Visual encoder tokens of every frame (zeros at padding frames), see [`FavorModel.get_visual_features`].
    audio_tokens (`torch.FloatTensor` of shape `(batch_size, num_audio_frames, audio_feature_size)`):
        Projected audio frames at 50 Hz: the Whisper stream, then the BEATs stream (video-SALMONN).
    joint_tokens (`torch.FloatTensor` of shape `(batch_size, num_sync_frames, num_query_tokens, joint_feature_size)`):
        The synchronised audio-visual frames the connector windows.
    resolution_outputs (`list[torch.FloatTensor]`):
        The connector's output of each resolution, each of shape `(batch_size, max_num_tokens, connector_hidden_size)`.
    diversity_loss (`torch.FloatTensor` of shape `()`):
        Diversity loss of the connector's query outputs.
    frame_counts (`torch.LongTensor` of shape `(batch_size,)`):
        How many synchronised frames of each sample hold content.
    window_attentions (`tuple`, *optional*, returned with `output_attentions=True`):
        The causal Q-Former's frame-level attention over the window features: per layer, one map per resolution of
        shape `(batch_size * windows, heads, window_length, window_length)` (see `ConnectorOutput` in `connector.py`).
    query_attentions (`tuple`, *optional*, returned with `output_attentions=True`):
        The Q-Former's query self-attention: per layer, one map per resolution of shape
        `(batch_size * windows, heads, queries, queries)`.
    cross_attentions (`tuple`, *optional*, returned with `output_attentions=True`):
        The Q-Former's cross-attention from the queries to the window features: per layer, one map per resolution of
        shape `(batch_size * windows, heads, queries, window_length)`.
    image_outputs (`BaseModelOutputWithPooling`, *optional*):
        The visual encoder on the frames (see [`FavorModel.encode_frames`]): `pooler_output` is `visual_tokens`;
        `last_hidden_state`, `hidden_states` and `attentions` are the vision tower's on the real frames. `None` when
        no frames were encoded here.
    audio_outputs (`BaseModelOutputWithPooling`, *optional*):
        The speech encoder: `last_hidden_state` is Whisper's output `(batch_size, 1500 * num_chunks, d_model)`,
        `pooler_output` is `audio_tokens`. `None` when no audio features were encoded here.
    """

    embeds: torch.FloatTensor | None = None
    token_counts: torch.LongTensor | None = None
    visual_tokens: torch.FloatTensor | None = None
    audio_tokens: torch.FloatTensor | None = None
    joint_tokens: torch.FloatTensor | None = None
    resolution_outputs: list | None = None
    diversity_loss: torch.FloatTensor | None = None
    frame_counts: torch.LongTensor | None = None
    window_attentions: tuple | None = None
    query_attentions: tuple | None = None
    cross_attentions: tuple | None = None
    image_outputs: BaseModelOutputWithPooling | None = None
    audio_outputs: BaseModelOutputWithPooling | None = None


@auto_docstring(custom_intro="Outputs of [`FavorModel`]: the LLM body's outputs and the audio-visual tokens it read.")
@dataclass
class FavorModelOutputWithPast(MultimodalBaseModelOutputWithPast):
    r"""
    image_outputs (`BaseModelOutputWithPooling`, *optional*):
        The visual encoder on the frames: `pooler_output` (batch_size, num_frames, num_query_tokens,
        visual_feature_size) visual tokens; `last_hidden_state`, `hidden_states`, `attentions` of the vision tower on
        the real frames (frames are images to it). `None` when the call had no frames.
    audio_outputs (`BaseModelOutputWithPooling`, *optional*):
        The speech encoder: `last_hidden_state` Whisper's output, `pooler_output` the projected audio frames.
    audio_visual_embeds (`torch.FloatTensor` of shape `(batch_size, max_num_tokens, hidden_size)`, *optional*):
        The LLM-width audio-visual tokens written over the placeholder (`None` when the call had no media).
    diversity_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Diversity loss of the connector's query outputs (`None` when the call had no media).
    """

    audio_visual_embeds: torch.FloatTensor | None = None
    diversity_loss: torch.FloatTensor | None = None


@auto_docstring(custom_intro="Outputs of [`FavorForConditionalGeneration`].")
@dataclass
class FavorCausalLMOutputWithPast(MultimodalCausalLMOutputWithPast):
    r"""
    image_outputs (`BaseModelOutputWithPooling`, *optional*):
        The visual encoder on the frames, see [`FavorModelOutputWithPast`].
    audio_outputs (`BaseModelOutputWithPooling`, *optional*):
        The speech encoder, see [`FavorModelOutputWithPast`].
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is provided):
        `lm_loss + config.diversity_loss_weight * diversity_loss`, the loss to optimise.
    lm_loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` is provided):
        Language modeling loss (cross-entropy on the answer tokens).
    diversity_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Diversity loss of the connector's query outputs (`None` when the call had no media).
    audio_visual_embeds (`torch.FloatTensor` of shape `(batch_size, max_num_tokens, hidden_size)`, *optional*):
        The LLM-width audio-visual tokens written over the placeholder (`None` when the call had no media).
    """

    lm_loss: torch.FloatTensor | None = None
    diversity_loss: torch.FloatTensor | None = None
    audio_visual_embeds: torch.FloatTensor | None = None


__all__ = ["FavorAudioVisualOutput", "FavorCausalLMOutputWithPast", "FavorModelOutputWithPast"]

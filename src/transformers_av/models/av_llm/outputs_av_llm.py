"""The outputs of the Audio-Visual LLM models ([`AvLlmModel`], [`AvLlmForConditionalGeneration`]) and of their media
path ([`AvLlmModel.get_media_features`])."""

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
HARDCODED_CONFIG_FOR_MODELS.setdefault("av-llm", "AvLlmConfig")


@auto_docstring(custom_intro="What [`AvLlmModel.get_media_features`] computes.")
@dataclass
class AvLlmMediaOutput(ModelOutput):
    r"""
    embeds (`torch.FloatTensor` of shape `(batch_size, max_num_tokens, hidden_size)`):
        LLM-width media tokens, `[temporal | spatial | audio]` per sample, left-aligned; only the first
        `token_counts[i]` rows of sample `i` are real.
    token_counts (`torch.LongTensor` of shape `(batch_size,)`):
        How many media tokens each sample has (the length of its expanded placeholder).
    temporal_tokens (`torch.FloatTensor` of shape `(batch_size, num_frames, vision_hidden_size)`, *optional*):
        The [CLS] token of every frame (`None` when the vision encoder did not run).
    spatial_tokens (`torch.FloatTensor` of shape `(batch_size, num_patches, vision_hidden_size)`, *optional*):
        The patch tokens averaged over each sample's frames (`None` when the vision encoder did not run).
    audio_tokens (`torch.FloatTensor` of shape `(batch_size, num_segments, audio_token_size)`, *optional*):
        The flattened CLAP output of every audio segment (`None` when the audio encoder did not run).
    uses_visual (`torch.BoolTensor` of shape `(batch_size,)`, *optional*):
        Which samples used their frames.
    uses_audio (`torch.BoolTensor` of shape `(batch_size,)`, *optional*):
        Which samples used their audio.
    image_outputs (`BaseModelOutputWithPooling`, *optional*):
        The CLIP tower on the encoded frames (frames are images to it): `pooler_output` is `temporal_tokens`,
        `last_hidden_state` the hidden state the tokens are read from `(num_encoded_frames, 1 + num_patches,
        vision_hidden_size)`, `hidden_states` / `attentions` every layer's when asked for.
    audio_outputs (`BaseModelOutputWithPooling`, *optional*):
        The CLAP tower on the encoded segments: `pooler_output` is `audio_tokens`.
    """

    embeds: torch.FloatTensor | None = None
    token_counts: torch.LongTensor | None = None
    temporal_tokens: torch.FloatTensor | None = None
    spatial_tokens: torch.FloatTensor | None = None
    audio_tokens: torch.FloatTensor | None = None
    uses_visual: torch.BoolTensor | None = None
    uses_audio: torch.BoolTensor | None = None
    image_outputs: BaseModelOutputWithPooling | None = None
    audio_outputs: BaseModelOutputWithPooling | None = None


@auto_docstring(custom_intro="Outputs of [`AvLlmModel`]: the LLM body's outputs and the media tokens it read.")
@dataclass
class AvLlmModelOutputWithPast(MultimodalBaseModelOutputWithPast):
    r"""
    image_outputs (`BaseModelOutputWithPooling`, *optional*):
        The CLIP tower on the frames, see [`AvLlmMediaOutput`] (`None` when the call encoded no frames).
    audio_outputs (`BaseModelOutputWithPooling`, *optional*):
        The CLAP tower on the audio segments, see [`AvLlmMediaOutput`] (`None` when the call encoded no audio).
    media_embeds (`torch.FloatTensor` of shape `(batch_size, max_num_tokens, hidden_size)`, *optional*):
        The LLM-width media tokens written over the placeholder (`None` when the call used no media).
    """

    media_embeds: torch.FloatTensor | None = None


@auto_docstring(custom_intro="Outputs of [`AvLlmForConditionalGeneration`].")
@dataclass
class AvLlmCausalLMOutputWithPast(MultimodalCausalLMOutputWithPast):
    r"""
    image_outputs (`BaseModelOutputWithPooling`, *optional*):
        The CLIP tower on the frames, see [`AvLlmMediaOutput`] (`None` when the call encoded no frames).
    audio_outputs (`BaseModelOutputWithPooling`, *optional*):
        The CLAP tower on the audio segments, see [`AvLlmMediaOutput`] (`None` when the call encoded no audio).
    media_embeds (`torch.FloatTensor` of shape `(batch_size, max_num_tokens, hidden_size)`, *optional*):
        The LLM-width media tokens written over the placeholder (`None` when the call used no media).
    """

    media_embeds: torch.FloatTensor | None = None


__all__ = ["AvLlmCausalLMOutputWithPast", "AvLlmMediaOutput", "AvLlmModelOutputWithPast"]
